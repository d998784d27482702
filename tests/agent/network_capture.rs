//! Capture through the agent (step f) of a real dirty disk against the real router on 127.0.0.1:
//! the server-built, server-signed manifest must hold the same chunks, masks and partition records
//! as a local `image capture` of the same disk; a file system that must not be captured is
//! refused by the agent, reported, and nothing is uploaded.

use super::{Server, mac};
use crate::store::util::{Fixture, label};
use roomcast::net::capture::CaptureConfig;
use roomcast::net::files::BootRoot;
use roomcast::net::http::{BootConfig, BootService};
use roomcast_agent::AgentError;
use roomcast_agent::capture::{CaptureAgentOptions, run_capture};
use roomcast_lab::dirty_disk::{self, DirtyDisk, DirtySpec, FsKind};
use roomcast_proto::contract::Verdict;
use roomcast_store::capture::{self, CaptureOptions};
use roomcast_store::chunk::ChunkSize;
use roomcast_store::keys::Signer;
use roomcast_store::manifest::{CaptureMode, Manifest};
use std::path::Path;
use std::sync::Arc;

const CHUNK: u32 = 256 * 1024;

/// The small dirty master, built once per test in `dir`.
fn master(dir: &Path) -> DirtyDisk {
    dirty_disk::build(&dir.join("master.img"), &DirtySpec::small()).unwrap()
}

/// A local capture of `disk` into `f`'s store, in `mode`.
fn local(f: &Fixture, disk: &Path, mode: CaptureMode) -> Manifest {
    let r = capture::capture_as(
        &f.store,
        disk,
        label("local"),
        &f.signer,
        &CaptureOptions {
            chunk_size: ChunkSize::new(CHUNK).unwrap(),
            level: 3,
            workers: 2,
        },
        mode,
        &|_| {},
    )
    .unwrap();
    (*f.store.open_verified(&r.id).unwrap()).clone()
}

/// A capture session on a fresh store: the server, the store's fixture, the master's token.
fn capture_server(whole_disk: bool) -> (Server, Fixture, String) {
    let f = Fixture::new();
    let reports = f.path("reports");
    std::fs::create_dir_all(&reports).unwrap();
    let config = BootConfig {
        campaign: "capture-test".into(),
        machines: [(mac(1), "S12-M".to_string())].into(),
        base_url: "http://127.0.0.1".into(),
        kernel: "vmlinuz".into(),
        initrd: "initrd.gz".into(),
        cmdline: String::new(),
        reports_dir: reports,
        image: None,
    };
    let capture = CaptureConfig {
        machine: mac(1),
        store: f.store.clone(),
        signer: Arc::new(Signer::load(&f.key_file).unwrap()),
        label: label("network"),
        chunk_size: ChunkSize::new(CHUNK).unwrap(),
        level: 3,
        whole_disk,
    };
    let service =
        BootService::with_capture(config, BootRoot::new(f.dir.path()).unwrap(), Some(capture))
            .unwrap();
    let server = Server::serve(service);
    let token = server.token(mac(1));
    (server, f, token)
}

fn agent(server: &Server, token: &str, disk: &Path, whole_disk: bool) -> CaptureAgentOptions {
    CaptureAgentOptions {
        server: server.url(),
        token: token.into(),
        disk: disk.to_path_buf(),
        whole_disk,
    }
}

fn chunk_files(f: &Fixture) -> usize {
    walk(&f.store.root().join("chunks"))
}

fn walk(p: &Path) -> usize {
    std::fs::read_dir(p).map_or(0, |d| {
        d.map(|e| e.unwrap().path())
            .map(|p| if p.is_dir() { walk(&p) } else { 1 })
            .sum()
    })
}

/// The dirty disk through the agent: same chunks (sha256, compressed sizes, used ranges) and the
/// same layout record as a local capture; the report's figures are the manifest's. Then
/// `--whole-disk` through the agent equals a local whole-disk capture.
#[test]
fn capture_through_the_agent_equals_a_local_capture_masks_and_partitions_included() {
    let work = tempfile::tempdir().unwrap();
    let disk = master(work.path());
    let local_fs = local(&Fixture::new(), &disk.path, CaptureMode::FileSystems);
    let l = local_fs.layout.as_ref().unwrap();
    assert_eq!(l.table, "gpt", "{l:?}");
    assert_eq!(l.partitions.len(), disk.parts.len(), "{l:?}");
    assert!(
        local_fs.chunks.iter().any(|c| c.is_unused()) && local_fs.used_bytes() < disk.size / 2,
        "the local capture read the file systems: {l:?}"
    );

    let (server, f, token) = capture_server(false);
    let out = run_capture(&agent(&server, &token, &disk.path, false)).unwrap();
    let id = out.result.unwrap();
    let net = f.store.open_verified(&id.parse().unwrap()).unwrap();
    assert_eq!(net.chunks, local_fs.chunks, "chunks, sha256 and masks");
    assert_eq!(net.layout, local_fs.layout, "mode, table, partitions");
    assert_eq!(net.partition_table, local_fs.partition_table);
    let r = out.report.capture().unwrap();
    assert_eq!(out.report.result, Verdict::Ok);
    assert!(!r.whole_disk);
    assert_eq!(r.used_bytes, local_fs.used_bytes());
    assert_eq!(r.unused_chunks, local_fs.unused_chunks() as u64);
    let data = local_fs.chunks.iter().filter(|c| !c.is_zero()).count() as u64;
    assert_eq!(r.uploaded_chunks + r.reused_chunks, data, "{r:?}");
    assert_eq!(
        r.zero_chunks + r.unused_chunks + data,
        local_fs.chunks.len() as u64
    );
    let discarded = l.discarded_bytes();
    assert_eq!(r.discarded_bytes, discarded);
    // Nothing but the masked chunks was stored.
    assert_eq!(chunk_files(&f) as u64, r.uploaded_chunks);
    drop(server);

    let local_whole = local(&Fixture::new(), &disk.path, CaptureMode::WholeDisk);
    let (server, f, token) = capture_server(false);
    let out = run_capture(&agent(&server, &token, &disk.path, true)).unwrap();
    let id = out.result.unwrap();
    let net = f.store.open_verified(&id.parse().unwrap()).unwrap();
    assert_eq!(net.mode(), CaptureMode::WholeDisk);
    assert_eq!(net.chunks, local_whole.chunks);
    assert_eq!(net.layout, local_whole.layout);
    assert!(net.chunks.iter().all(|c| c.used.is_none()));
    assert!(out.report.capture().unwrap().whole_disk);
}

/// A plan that asks for the whole disk is followed by an agent not told `--whole-disk` (the server
/// refusing any other finish is `net::capture`'s unit test).
#[test]
fn the_servers_plan_can_ask_for_the_whole_disk() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("plain.img");
    std::fs::write(&source, crate::store::util::random(5, 3 << 20)).unwrap();
    let (server, f, token) = capture_server(true);
    let out = run_capture(&agent(&server, &token, &source, false)).unwrap();
    let id = out.result.unwrap();
    let m = f.store.open_verified(&id.parse().unwrap()).unwrap();
    assert_eq!(m.mode(), CaptureMode::WholeDisk);
    assert!(out.report.capture().unwrap().whole_disk);
}

/// A `dirty_disk::mark_*` function.
type Mark = fn(&Path, &dirty_disk::DiskPart) -> Result<(), roomcast_lab::LabError>;

/// A hibernated NTFS and an ext4 needing journal recovery: the agent refuses before any upload,
/// its failed report names the disk, the partition, the reason and the fix, and the server's
/// store holds no chunk and no image.
#[test]
fn a_file_system_that_is_not_clean_is_refused_by_the_agent_and_nothing_is_uploaded() {
    let work = tempfile::tempdir().unwrap();
    let disk = master(work.path());
    let cases: [(FsKind, Mark); 2] = [
        (FsKind::Ntfs, dirty_disk::mark_ntfs_hibernated),
        (FsKind::Ext4, dirty_disk::mark_ext4_needs_recovery),
    ];
    for (fs, mark) in cases {
        let copy = work.path().join(format!("{fs:?}.img"));
        std::fs::copy(&disk.path, &copy).unwrap();
        let p = disk.part(fs).unwrap();
        mark(&copy, p).unwrap();
        let (server, f, token) = capture_server(false);
        let out = run_capture(&agent(&server, &token, &copy, false)).unwrap();
        let err = out.result.unwrap_err();
        assert!(matches!(err, AgentError::NotClean { .. }), "{fs:?}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(&copy.display().to_string())
                && text.contains(&format!("partition {}", p.number))
                && text.contains("fix:")
                && text.contains("nothing was uploaded"),
            "{fs:?}: {text}"
        );
        assert_eq!(out.report.result, Verdict::Failed);
        let reports = server.service.reports();
        assert_eq!(reports.len(), 1, "the failure was reported");
        let body: serde_json::Value = serde_json::from_str(&reports[0].body).unwrap();
        assert_eq!(body["result"], "failed");
        assert_eq!(body["mode"], "capture");
        assert_eq!(body["error"].as_str(), Some(text.as_str()));
        assert_eq!(chunk_files(&f), 0, "{fs:?}: nothing uploaded");
        assert!(f.store.image_ids().unwrap().is_empty());
    }
}

/// Step f of a Windows master (issue 15): a Windows-shaped disk (GPT: ESP, MSR, NTFS with
/// `Windows\Setup\State\State.ini` in UTF-16LE) whose image state is not
/// `IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE` is refused by the agent, in both capture modes, naming
/// the state found and the fix, with nothing uploaded and no image in the store; the same disk
/// sealed by sysprep is captured.
#[test]
fn a_windows_master_not_generalised_by_sysprep_is_refused_and_nothing_is_captured() {
    let work = tempfile::tempdir().unwrap();
    for state in [
        "IMAGE_STATE_COMPLETE",
        "IMAGE_STATE_UNDEPLOYABLE",
        "IMAGE_STATE_SPECIALIZE_RESEAL_TO_OOBE",
        "IMAGE_STATE_GENERALIZE_RESEAL_TO_AUDIT",
    ] {
        let disk =
            dirty_disk::build_windows(&work.path().join(format!("{state}.img")), state).unwrap();
        let ntfs = disk.part(FsKind::Ntfs).unwrap();
        assert_eq!(ntfs.number, 3, "ESP, MSR, then Windows");
        for whole_disk in [false, true] {
            let (server, f, token) = capture_server(whole_disk);
            let out = run_capture(&agent(&server, &token, &disk.path, false)).unwrap();
            let err = out.result.unwrap_err();
            assert!(
                matches!(err, AgentError::NotGeneralised { .. }),
                "{state}: {err}"
            );
            let text = err.to_string();
            assert!(
                text.contains("partition 3 (Windows): image state ")
                    && text.contains(state)
                    && text.contains("sysprep /generalize /oobe /shutdown")
                    && text.contains("nothing was uploaded"),
                "{state}: {text}"
            );
            let reports = server.service.reports();
            assert_eq!(reports.len(), 1, "the refusal was reported");
            let body: serde_json::Value = serde_json::from_str(&reports[0].body).unwrap();
            assert_eq!(body["result"], "failed");
            assert_eq!(body["error"].as_str(), Some(text.as_str()));
            assert_eq!(chunk_files(&f), 0, "{state}: nothing uploaded");
            assert!(f.store.image_ids().unwrap().is_empty(), "{state}: no image");
        }
    }
    let sealed = dirty_disk::build_windows(
        &work.path().join("sealed.img"),
        "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE",
    )
    .unwrap();
    let (server, f, token) = capture_server(false);
    let out = run_capture(&agent(&server, &token, &sealed.path, false)).unwrap();
    let id = out.result.unwrap();
    let m = f.store.open_verified(&id.parse().unwrap()).unwrap();
    let fs: Vec<&str> = m
        .layout
        .as_ref()
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.fs.as_str())
        .collect();
    assert_eq!(fs[0], "fat32");
    assert_eq!(fs[2], "ntfs");
}
