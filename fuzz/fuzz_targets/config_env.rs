//! Configuration from `BULWARK_` environment variables (each input line is
//! `NAME=VALUE`, prefixed with `BULWARK_`), over TOML defaults: loads or is a
//! typed error; what loads builds and carries calls.
#![no_main]

use bulwark::config::Loader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&fail, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    // The previous input's variables go first (one process, one thread).
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BULWARK_") {
            std::env::remove_var(key);
        }
    }
    for line in text.lines().take(16) {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        if key.is_empty() || key.contains('\0') || value.contains('\0') {
            continue;
        }
        std::env::set_var(format!("BULWARK_{key}"), value);
    }
    let loaded = Loader::new()
        .toml("[timeout.payments]\ntotal = \"2s\"\n[breaker.payments]\nconsecutive_failures = 5")
        .env()
        .load();
    match loaded {
        Ok(config) => bulwark_fuzz::exercise(&config, u32::from(fail % 4)),
        Err(e) => {
            let _ = (e.path(), e.field(), e.reason(), e.to_string());
        }
    }
});
