use crate::Fleet;

/// The hash tag of a key: what Redis Cluster hashes to pick a slot.
fn tag(key: &str) -> &str {
    let open = key.find('{').expect("a hash tag");
    let close = key[open..].find('}').expect("a closed hash tag") + open;
    &key[open + 1..close]
}

#[tokio::test(flavor = "current_thread")]
async fn every_key_of_a_layer_shares_one_hash_tag() {
    let fleet = Fleet::builder()
        .url("redis://127.0.0.1:1")
        .prefix("svc")
        .build()
        .unwrap();
    let inner = &fleet.inner;
    for (kind, parts) in [
        ("rl", &["tat", "members"][..]),
        ("b", &["w", "open", "half", "probe", "gen"][..]),
        ("rb", &["w", "members"][..]),
    ] {
        let keys: Vec<String> = parts
            .iter()
            .map(|p| inner.key(kind, "payments", p))
            .collect();
        for key in &keys {
            assert_eq!(tag(key), format!("svc:{kind}:payments"), "{key}");
        }
        // Another layer of the same kind lands elsewhere.
        assert_ne!(tag(&inner.key(kind, "inventory", parts[0])), tag(&keys[0]));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn bad_fleet_settings_name_the_setting() {
    let e = Fleet::builder().build().unwrap_err();
    assert_eq!(e.field(), "redis_url");
    let e = Fleet::builder().url("nope://x").build().unwrap_err();
    assert_eq!(e.field(), "redis_url");
    let e = Fleet::builder()
        .url("redis://127.0.0.1")
        .prefix("a{b")
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "prefix");
    let e = Fleet::builder()
        .url("redis://127.0.0.1")
        .sync_interval(std::time::Duration::from_millis(1))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "sync_interval");
}

#[tokio::test(flavor = "current_thread")]
async fn a_cluster_url_selects_the_cluster_client() {
    let e = Fleet::builder()
        .url("redis+cluster://")
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "redis_url");
    let e = Fleet::builder()
        .url("redis://127.0.0.1:1")
        .cluster_nodes(["redis://127.0.0.1:2"])
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "cluster_nodes");
    let single = Fleet::new("redis://127.0.0.1:1").unwrap();
    assert!(!single.is_cluster());
    let cluster = Fleet::builder()
        .url("redis+cluster://127.0.0.1:1,127.0.0.1:2")
        .build();
    #[cfg(feature = "cluster")]
    assert!(cluster.unwrap().is_cluster());
    #[cfg(not(feature = "cluster"))]
    {
        let e = cluster.unwrap_err();
        assert_eq!(e.field(), "redis_url");
        assert!(e.to_string().contains("`cluster` feature"), "{e}");
    }
    let nodes = Fleet::builder()
        .cluster_nodes(["redis://127.0.0.1:1"])
        .build();
    #[cfg(feature = "cluster")]
    assert!(nodes.unwrap().is_cluster());
    #[cfg(not(feature = "cluster"))]
    assert_eq!(nodes.unwrap_err().field(), "redis_url");
}

#[test]
fn a_layer_outside_a_runtime_is_an_error_not_a_panic() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let fleet = rt.block_on(async { Fleet::new("redis://127.0.0.1:1").unwrap() });
    let e = crate::SharedBreakerLayer::builder(&fleet, "x")
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "runtime");
    let e = crate::SharedRetryBudget::new(&fleet, "x", 0.1, 1, std::time::Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(e.field(), "runtime");
    let e = crate::FleetRateLimiter::builder(&fleet, "x")
        .limit(1, std::time::Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "runtime");
}
