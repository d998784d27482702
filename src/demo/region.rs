//! The demo's built-in region: two tiny installers (real files with their real size and sha256), a
//! catalog entry for each, a Debian 12 profile with checks, a domain OU and a sign-off list, and a
//! room file listing the virtual room's PCs. Written as YAML files exactly like a region's git
//! repository, so the campaign reads them through the same loader and checks as a real one.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The demo domain (a Samba AD DC provisioned in the virtual room).
pub const REALM: &str = "DEMO.ROOMCAST.TEST";
/// Its NetBIOS name (the first label of the realm, as the campaign derives it).
pub const WORKGROUP: &str = "DEMO";
/// The OU the profile joins the PCs into.
pub const OU: &str = "OU=DEMO,OU=Salles,DC=demo,DC=roomcast,DC=test";
/// The person the profile allows to sign step e off.
pub const SIGNER: &str = "Mme Martin (professeure)";
/// The room id.
pub const ROOM: &str = "DEMO";
/// The school's UAI.
pub const UAI: &str = "0330999Z";
/// The secret holding the join account (`user%password`).
pub const JOIN_SECRET: &str = "AD_JOIN_DEMO";

/// One of the demo's installers.
struct Tool {
    id: &'static str,
    name: &'static str,
    version: &'static str,
    /// What its program prints: the technical test looks for it.
    says: &'static str,
}

const TOOLS: [Tool; 2] = [
    Tool {
        id: "demo-notes",
        name: "Notes (demo)",
        version: "1.0",
        says: "notes 1.0 ready",
    },
    Tool {
        id: "demo-atlas",
        name: "Atlas (demo)",
        version: "2.1",
        says: "atlas 2.1 ready",
    },
];

/// The region written by [`write`].
#[derive(Debug, Clone)]
pub struct Region {
    /// The room file (what `roomcast campaign start` takes).
    pub room_file: PathBuf,
    /// Hostnames of the room's machines, in order (the first is the master).
    pub hostnames: Vec<String>,
    /// The installers' folder (the catalog's `file://` sources point here).
    pub mirror: PathBuf,
}

fn installer_script(t: &Tool) -> String {
    format!(
        "#!/bin/sh\n\
         # roomcast demo installer: {name} {version}. Installs into the disk mounted at $1.\n\
         set -e\n\
         root=\"$1\"\n\
         mkdir -p \"$root/opt/{id}\"\n\
         printf '%s\\n' '{version}' > \"$root/opt/{id}/VERSION\"\n\
         printf '#!/bin/sh\\necho \"%s\"\\n' '{says}' > \"$root/opt/{id}/run\"\n\
         chmod 755 \"$root/opt/{id}/run\"\n\
         echo \"{id} {version} installed under $root/opt/{id}\"\n",
        id = t.id,
        name = t.name,
        version = t.version,
        says = t.says,
    )
}

fn catalog_entry(t: &Tool, source: &Path, bytes: &[u8]) -> String {
    format!(
        "# Written by `roomcast demo`: a tiny local installer standing in for a real package.\n\
         id: {id}\n\
         name: '{name}'\n\
         publisher: 'roomcast demo'\n\
         licence: free\n\
         versions:\n\
         \x20 - version: '{version}'\n\
         \x20   os: debian-12\n\
         \x20   installer:\n\
         \x20     file: '{id}-{version}.sh'\n\
         \x20     size: {size}\n\
         \x20     sha256: {sha}\n\
         \x20     source: 'file://{source}'\n\
         \x20   install: 'sh \"{{{{ installer.path }}}}\" /mnt'\n\
         \x20   detect:\n\
         \x20     file: '/mnt/opt/{id}/VERSION'\n\
         \x20   reboot: false\n\
         \x20   qualification:\n\
         \x20     status: qualified\n\
         \x20     by: 'roomcast demo'\n\
         \x20     date: 2026-01-01\n",
        id = t.id,
        name = t.name,
        version = t.version,
        size = bytes.len(),
        sha = hex::encode(Sha256::digest(bytes)),
        source = source.display(),
    )
}

fn profile() -> String {
    let mut software = String::new();
    let mut tests = String::new();
    for t in &TOOLS {
        software.push_str(&format!("  - {}@{}\n", t.id, t.version));
        tests.push_str(&format!(
            "  - name: '{name} answers'\n    command: 'sh /mnt/opt/{id}/run'\n    expect_output: '{says}'\n",
            name = t.name,
            id = t.id,
            says = t.says
        ));
    }
    format!(
        "# Written by `roomcast demo`: a Debian 12 room with two small local installers.\n\
         name: demo-debian12\n\
         version: 1\n\
         description: 'roomcast demo: Debian 12, two local installers, joined to a Samba AD'\n\
         pc_model:\n\
         \x20 manufacturer: 'roomcast'\n\
         \x20 model: 'Virtual PC'\n\
         os: debian-12\n\
         base_image: demo-base@1\n\
         # The master's disk is mounted at /mnt while it runs (steps c-f).\n\
         generalize: 'rm -f /mnt/etc/machine-id && touch /mnt/etc/machine-id'\n\
         software:\n{software}\
         licences: []\n\
         domain:\n\
         \x20 name: {domain}\n\
         \x20 ou: '{OU}'\n\
         \x20 join_account: secret:{JOIN_SECRET}\n\
         \x20 hostname: \"{{{{ room.id }}}}-PC{{{{ '%02d' | format(machine.index) }}}}\"\n\
         tests:\n{tests}\
         signoff:\n\
         \x20 required: true\n\
         \x20 allowed:\n\
         \x20   - '{SIGNER}'\n",
        domain = REALM.to_lowercase(),
    )
}

/// The hostname the profile's template gives machine `i` (0-based) of the room.
pub fn hostname(i: usize) -> String {
    format!("{ROOM}-PC{:02}", i + 1)
}

fn room(addresses: &[String], interface: &str) -> String {
    let mut machines = String::new();
    for (i, a) in addresses.iter().enumerate() {
        machines.push_str(&format!(
            "  - mac: '52:54:00:de:00:{:02x}'\n    serial: 'DEMO{:04}'\n    model: 'Virtual PC'\n    address: '{a}'\n",
            i + 1,
            i + 1
        ));
    }
    format!(
        "# Written by `roomcast demo`: the virtual room built in network namespaces (198.18.0.0/16).\n\
         school:\n\
         \x20 uai: '{UAI}'\n\
         \x20 name: 'Lycée de démonstration'\n\
         \x20 city: Bordeaux\n\
         room: {ROOM}\n\
         description: 'virtual room of roomcast demo'\n\
         vlan: PEDA\n\
         network:\n\
         \x20 interface: {interface}\n\
         \x20 subnet: 198.18.0.0/16\n\
         \x20 multicast_group: 239.255.77.1\n\
         \x20 link_speed_mbps: 1000\n\
         profile: demo-debian12@1\n\
         master: {master}\n\
         machines:\n{machines}",
        master = hostname(0),
    )
}

/// Writes the installers into `<root>/mirror` and the region (catalog, profile, room) under
/// `<root>/region`, for a room whose PCs answer SSH at `addresses` and whose deploy server uses
/// `interface`.
pub fn write(root: &Path, addresses: &[String], interface: &str) -> std::io::Result<Region> {
    let mirror = root.join("mirror");
    let region = root.join("region");
    let catalog = region.join("profiles/catalog");
    let rooms = region.join("rooms").join(UAI);
    for d in [&mirror, &catalog, &rooms] {
        std::fs::create_dir_all(d)?;
    }
    for t in &TOOLS {
        let script = installer_script(t);
        let path = mirror.join(format!("{}-{}.sh", t.id, t.version));
        std::fs::write(&path, &script)?;
        std::fs::write(
            catalog.join(format!("{}.yaml", t.id)),
            catalog_entry(t, &path, script.as_bytes()),
        )?;
    }
    std::fs::write(region.join("profiles/demo-debian12.yaml"), profile())?;
    let room_file = rooms.join(format!("{ROOM}.yaml"));
    std::fs::write(&room_file, room(addresses, interface))?;
    Ok(Region {
        room_file,
        hostnames: (0..addresses.len()).map(hostname).collect(),
        mirror,
    })
}

/// The base image's files (`mkfs.ext4 -d` takes this tree): a minimal Debian-looking root.
pub fn base_tree(dir: &Path) -> std::io::Result<()> {
    for d in ["etc", "opt", "var/cache/roomcast", "home"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    std::fs::write(
        dir.join("etc/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm) - roomcast demo base image\"\n\
         NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
    )?;
    std::fs::write(
        dir.join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )?;
    std::fs::write(dir.join("etc/hostname"), "demo-base\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_region_sets_up_a_campaign_without_findings() {
        let dir = tempfile::tempdir().unwrap();
        let addrs: Vec<String> = (1..=3).map(|i| format!("198.18.1.{i}")).collect();
        let region = write(dir.path(), &addrs, "vsrv").unwrap();
        let secrets = dir.path().join("secrets");
        std::fs::write(&secrets, format!("{JOIN_SECRET}=Administrator%pw\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let opts = crate::campaign::setup::SetupOptions {
            room_file: region.room_file.clone(),
            installers: dir.path().join("installers"),
            shares: dir.path().join("shares"),
            dir: dir.path().join("campaign"),
            ssh_user: "root".into(),
            ssh_key: dir.path().join("key"),
            known_hosts: dir.path().join("known_hosts"),
            port: 22,
            connect_timeout_secs: 5,
            software_only: false,
            retries: None,
            staging_dir: None,
            join_paths: None,
            domain_controller: None,
            secrets: Some(secrets),
        };
        let today = "2026-11-28".parse().unwrap();
        let setup = crate::campaign::setup::build(&opts, today).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(setup.spec.plan.machines, region.hostnames);
        assert_eq!(setup.spec.plan.master, "DEMO-PC01");
        assert_eq!(setup.spec.addresses["DEMO-PC02"], "198.18.1.2");
        assert_eq!(setup.spec.software.len(), 2);
        assert_eq!(setup.spec.checks.len(), 2);
        let join = setup.spec.join.expect("a Linux image campaign joins");
        assert_eq!(join.domain.realm, REALM);
        assert_eq!(join.domain.workgroup, WORKGROUP);
        assert_eq!(join.domain.ou, OU);
        // The catalog's size and sha256 are those of the files written.
        for f in &setup.fetches {
            let src = f.source.strip_prefix("file://").unwrap();
            let bytes = std::fs::read(src).unwrap();
            assert_eq!(f.size, bytes.len() as u64);
            assert_eq!(f.sha256, hex::encode(Sha256::digest(&bytes)));
        }
    }
}
