//! Steps c and d on a "master" that is a real OpenSSH server in a namespace, with tiny shell-script
//! installers.

use roomcast::campaign::steps::checks::{Check, failure_summary, run_checks};
use roomcast::campaign::steps::install::{
    Detect, Outcome, Shell, Software, Target, install_all, write_logs,
};
use roomcast::remote::ssh::{SshClient, SshConfig};
use roomcast_lab::Lab;
use roomcast_lab::sshd::{SshKeys, Sshd};
use std::path::Path;

fn installer(dir: &Path, id: &str, root: &Path, exit: i32) -> Software {
    let script = dir.join(format!("{id}-setup.sh"));
    // A fake installer: records that it ran, creates its files, exits as told.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> {root}/{id}.runs\nmkdir -p {root}/opt/{id}\n\
             [ {exit} -eq 0 ] && touch {root}/opt/{id}/installed\necho \"{id} setup done for $1\"\nexit {exit}\n",
            root = root.display()
        ),
    )
    .unwrap();
    Software {
        id: id.into(),
        version: "1.0".into(),
        installer: script,
        installer_file: format!("{id}-setup.sh"),
        install: "sh {{ installer.path }} {{ machine.hostname }}".into(),
        detect: Detect::File(format!("{}/opt/{id}/installed", root.display())),
        licence_key: None,
    }
}

#[test]
fn install_is_idempotent_and_tests_check_code_and_output_on_a_real_master() {
    let dir = tempfile::tempdir().unwrap();
    let keys = SshKeys::generate(dir.path()).unwrap();
    let master_root = tempfile::tempdir().unwrap();
    let lab = Lab::builder().pcs(1).build().unwrap();
    let (srv, master) = (lab.server(), lab.pc(0).unwrap());
    let master_addr = master.addr().to_string();
    let _sshd = Sshd::start(
        master,
        &keys,
        &keys.host_key("a").unwrap(),
        None,
        dir.path(),
    )
    .unwrap();

    let root = master_root.path().to_path_buf();
    let software = vec![
        installer(dir.path(), "gimp", &root, 0),
        installer(dir.path(), "broken", &root, 7),
    ];
    let target = Target {
        hostname: "B204-PC01".into(),
        shell: Shell::Posix,
        staging_dir: root.join("staging").to_string_lossy().into_owned(),
    };
    let cfg = SshConfig::new("root", keys.client(), keys.known_hosts());
    let checks = vec![
        Check {
            name: "gimp installed".into(),
            command: format!("ls {}/opt/gimp", root.display()),
            expect_exit: 0,
            expect_output: Some("installed".into()),
        },
        Check {
            name: "broken installed".into(),
            command: format!("ls {}/opt/broken", root.display()),
            expect_exit: 0,
            expect_output: Some("installed".into()),
        },
    ];
    let (first, second, results) = srv
        .run(move || {
            let mut c = SshClient::connect(&master_addr, 22, &cfg).unwrap();
            let first = install_all(&mut c, &target, &software).unwrap();
            let second = install_all(&mut c, &target, &software).unwrap();
            let results = run_checks(&mut c, &checks).unwrap();
            (first, second, results)
        })
        .unwrap();
    assert_eq!(first[0].outcome, Outcome::Installed);
    assert_eq!(
        first[1].outcome,
        Outcome::Failed("install command exited with 7".into())
    );
    assert!(
        first[0].log.contains("gimp setup done for B204-PC01"),
        "{}",
        first[0].log
    );
    // Second pass: gimp is detected and skipped, the broken one is tried again.
    assert_eq!(second[0].outcome, Outcome::AlreadyInstalled);
    assert!(matches!(second[1].outcome, Outcome::Failed(_)));
    assert_eq!(
        std::fs::read_to_string(root.join("gimp.runs")).unwrap(),
        "run\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("broken.runs")).unwrap(),
        "run\nrun\n"
    );
    // Step d on the same master: one test passes, one fails with its reason.
    assert!(results[0].passed, "{results:?}");
    assert!(!results[1].passed);
    assert_eq!(
        failure_summary(&results).unwrap(),
        "broken installed: output lacks \"installed\" (first line: \"\")"
    );
    let logs = dir.path().join("logs");
    write_logs(&logs, &first).unwrap();
    assert!(
        std::fs::read_to_string(logs.join("broken.log"))
            .unwrap()
            .contains("exit 7")
    );
}

/// Samples `ps -eo args` (every process of the machine, the namespaced sshd and its children
/// included) until `stop` is set; returns every line seen.
fn sample_process_list(stop: &std::sync::atomic::AtomicBool) -> Vec<String> {
    let mut seen = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let out = std::process::Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .unwrap();
        seen.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(String::from),
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    seen
}

#[test]
fn a_licence_key_reaches_the_installer_but_never_the_process_list_of_a_real_master() {
    use roomcast::secrets::NamedSecret as Secret;
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicBool, Ordering};

    const KEY: &str = "K3Y-7f3a9c-SECRET-51ab";
    let dir = tempfile::tempdir().unwrap();
    let keys = SshKeys::generate(dir.path()).unwrap();
    let master_root = tempfile::tempdir().unwrap();
    let root = master_root.path().to_path_buf();
    let lab = Lab::builder().pcs(1).build().unwrap();
    let (srv, master) = (lab.server(), lab.pc(0).unwrap());
    let master_addr = master.addr().to_string();
    let _sshd = Sshd::start(
        master,
        &keys,
        &keys.host_key("a").unwrap(),
        None,
        dir.path(),
    )
    .unwrap();
    // The installer takes the key file's path, notes its mode and a hash of what it read, and
    // stays ~1 s so the sampler sees it running.
    let script = dir.path().join("cad-setup.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nstat -c %a \"$2\" > {r}/mode\nsha256sum < \"$2\" | cut -d' ' -f1 > {r}/received\n\
             sleep 1\nmkdir -p {r}/opt/cad && touch {r}/opt/cad/installed\n",
            r = root.display()
        ),
    )
    .unwrap();
    let software = vec![Software {
        id: "cad".into(),
        version: "1.0".into(),
        installer: script,
        installer_file: "cad-setup.sh".into(),
        install: "sh {{ installer.path }} --key-file {{ licence.key_file }}".into(),
        detect: Detect::File(format!("{}/opt/cad/installed", root.display())),
        licence_key: Some(Secret::new("CAD_KEY", KEY)),
    }];
    let staging = root.join("staging");
    let target = Target {
        hostname: "B204-PC01".into(),
        shell: Shell::Posix,
        staging_dir: staging.to_string_lossy().into_owned(),
    };
    let cfg = SshConfig::new("root", keys.client(), keys.known_hosts());
    let stop = AtomicBool::new(false);
    let (reports, seen) = std::thread::scope(|s| {
        let sampler = s.spawn(|| sample_process_list(&stop));
        let reports = srv.run(move || {
            let mut c = SshClient::connect(&master_addr, 22, &cfg).unwrap();
            install_all(&mut c, &target, &software).unwrap()
        });
        stop.store(true, Ordering::SeqCst);
        (reports.unwrap(), sampler.join().unwrap())
    });
    assert_eq!(reports[0].outcome, Outcome::Installed, "{}", reports[0].log);
    // The sampler did overlap the install (else "never seen" would prove nothing)...
    assert!(
        seen.iter().any(|l| l.contains("cad-setup.sh --key-file")),
        "the installer was never sampled"
    );
    // ...and never saw the key, in any process.
    assert!(
        seen.iter().all(|l| !l.contains(KEY)),
        "key on the process list: {:?}",
        seen.iter().find(|l| l.contains(KEY))
    );
    // The installer got the key, from a file only root could read; nothing is left behind.
    assert_eq!(
        std::fs::read_to_string(root.join("received"))
            .unwrap()
            .trim(),
        hex::encode(Sha256::digest(KEY.as_bytes()))
    );
    assert_eq!(
        std::fs::read_to_string(root.join("mode")).unwrap().trim(),
        "600"
    );
    let left: Vec<_> = std::fs::read_dir(&staging)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["cad-setup.sh".to_string()]);
    assert!(!reports[0].log.contains(KEY));
}
