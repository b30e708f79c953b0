//! Configuration from TOML: any text either loads or is a typed error; what
//! loads builds and carries calls through every stack and layer it names.
#![no_main]

use bulwark::config::ResilienceConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte: how many calls the service fails (0 to 3).
    let Some((&fail, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    match ResilienceConfig::from_toml_str(text) {
        Ok(config) => bulwark_fuzz::exercise(&config, u32::from(fail % 4)),
        Err(e) => {
            // The error names where; its text is printable.
            let _ = (e.path(), e.field(), e.reason(), e.to_string());
        }
    }
});
