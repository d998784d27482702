//! GLPI native inventory: a PC's hardware facts become the JSON document GLPI's
//! `/front/inventory.php` accepts (the glpi-agent format, `shared/glpi/inventory.schema.json`).
//!
//! GLPI matches the existing asset by serial (`bios.ssn`), `hardware.uuid` and MAC addresses, so the
//! document always carries all three when known.
//!
//! No personal data (framework 7.4.1.2): the document never has users, logins, last logged-in user,
//! processes, environment or user folders. [`PERSONAL_DATA_KEYS`] lists the keys that must never
//! appear; [`personal_data_keys`] finds them, and the GLPI adapter refuses to send a document that
//! has any.

use super::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Keys of the inventory format that carry personal data, which roomcast never sends.
pub const PERSONAL_DATA_KEYS: &[&str] = &[
    "users",
    "local_users",
    "local_groups",
    "login",
    "lastloggeduser",
    "datelastloggeduser",
    "userid",
    "username",
    "accesslog",
    "winowner",
    "wincompany",
    "processes",
    "envs",
    "folder",
];

// The facts are the agent↔server contract's (the PC sends them first); their one reader is the
// agent's, which a Linux machine's own inventory uses too.
pub use roomcast_agent::facts::read_linux_facts;
pub use roomcast_proto::contract::facts::{Cpu, Disk, HardwareFacts, NetInterface, OsFacts};

/// A software of the profile with its version, as installed by the campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Software {
    /// Name as the catalog gives it.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Publisher.
    pub publisher: String,
}

/// The `versionclient` roomcast announces (GLPI shows it as the agent version).
pub fn version_client() -> String {
    format!("roomcast_v{}", env!("CARGO_PKG_VERSION"))
}

fn put(map: &mut Map<String, Value>, key: &str, value: &str) {
    if !value.is_empty() {
        map.insert(key.to_string(), Value::String(value.to_string()));
    }
}

/// Builds the native inventory document for one PC. `at` is when the facts were gathered: it
/// makes the `deviceid` (glpi-agent's `<hostname>-YYYY-MM-DD-HH-MM-SS`).
pub fn document(facts: &HardwareFacts, software: &[Software], at: Timestamp) -> Value {
    let mut hardware = Map::new();
    put(&mut hardware, "name", &facts.hostname);
    put(&mut hardware, "uuid", &facts.uuid);
    if let Some(c) = &facts.chassis {
        put(&mut hardware, "chassis_type", c);
    }
    if let Some(m) = facts.memory_mib {
        hardware.insert("memory".into(), json!(m));
    }
    hardware.insert("vmsystem".into(), json!("Physical"));

    let mut bios = Map::new();
    put(&mut bios, "ssn", &facts.serial);
    put(&mut bios, "smanufacturer", &facts.vendor);
    put(&mut bios, "smodel", &facts.model);
    put(&mut bios, "mmanufacturer", &facts.board_vendor);
    put(&mut bios, "mmodel", &facts.board_name);
    put(&mut bios, "bmanufacturer", &facts.bios_vendor);
    put(&mut bios, "bversion", &facts.bios_version);
    if let Some(d) = &facts.bios_date {
        put(&mut bios, "bdate", d);
    }

    let networks: Vec<Value> = facts
        .interfaces
        .iter()
        .map(|i| {
            json!({
                "description": i.name,
                "mac": i.mac,
                "type": if i.wifi { "wifi" } else { "ethernet" },
                "virtualdev": i.virtual_dev,
                "status": if i.up { "up" } else { "down" },
            })
        })
        .collect();

    let cpus: Vec<Value> = facts
        .cpus
        .iter()
        .map(|c| {
            let mut m = Map::new();
            put(&mut m, "name", &c.name);
            put(&mut m, "manufacturer", &c.manufacturer);
            m.insert("core".into(), json!(c.cores));
            m.insert("thread".into(), json!(c.threads));
            Value::Object(m)
        })
        .collect();

    let storages: Vec<Value> = facts
        .disks
        .iter()
        .map(|d| {
            let mut s = Map::new();
            put(&mut s, "name", &d.name);
            put(&mut s, "model", &d.model);
            put(&mut s, "serial", &d.serial);
            s.insert("type".into(), json!("disk"));
            // GLPI stores disk sizes in MB.
            s.insert("disksize".into(), json!(d.size_bytes / 1_000_000));
            Value::Object(s)
        })
        .collect();

    let mut os = Map::new();
    put(&mut os, "name", &facts.os.name);
    put(&mut os, "full_name", &facts.os.full_name);
    put(&mut os, "version", &facts.os.version);
    put(&mut os, "kernel_name", &facts.os.kernel_name);
    put(&mut os, "kernel_version", &facts.os.kernel_version);
    put(&mut os, "arch", &facts.os.arch);

    let softwares: Vec<Value> = software
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("name".into(), json!(s.name));
            put(&mut m, "version", &s.version);
            put(&mut m, "publisher", &s.publisher);
            Value::Object(m)
        })
        .collect();

    let host = if facts.hostname.is_empty() {
        "roomcast-agent"
    } else {
        &facts.hostname
    };
    json!({
        "action": "inventory",
        "itemtype": "Computer",
        "deviceid": format!("{host}-{}", at.to_device_suffix()),
        "content": {
            "versionclient": version_client(),
            "hardware": hardware,
            "bios": bios,
            "cpus": cpus,
            "networks": networks,
            "storages": storages,
            "operatingsystem": os,
            "softwares": softwares,
        }
    })
}

/// Every key in `doc` (at any depth) that carries personal data; empty for a document roomcast may send.
pub fn personal_data_keys(doc: &Value) -> Vec<String> {
    let mut found = Vec::new();
    fn walk(v: &Value, path: &str, found: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let p = format!("{path}/{k}");
                    if PERSONAL_DATA_KEYS.contains(&k.to_ascii_lowercase().as_str()) {
                        found.push(p.clone());
                    }
                    walk(v, &p, found);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, &format!("{path}/{i}"), found);
                }
            }
            _ => {}
        }
    }
    walk(doc, "", &mut found);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_keys_are_found_at_any_depth() {
        let doc =
            json!({"content": {"hardware": {"lastloggeduser": "x"}, "users": [{"login": "y"}]}});
        assert_eq!(
            personal_data_keys(&doc),
            [
                "/content/hardware/lastloggeduser",
                "/content/users",
                "/content/users/0/login"
            ]
        );
    }
}
