//! Step b with a profile's `base_image_from: s3://…`: the school's store lacks the base image, so
//! the imaging worker pulls it from the region's Garage (checked against the region's key, which the
//! school trusts) and restores it on the master, a real agent in a PC namespace of the same lab. A
//! second campaign finds it in the store and does not pull again: the whole cluster is stopped
//! before it. A base image signed by a key the school does not trust refuses b, naming the signer
//! and the profile file.

use super::cluster::with_remote;
use super::transfer::{Region, URL};
use crate::campaign::imaging::{Server, config, disk, mac_of, sha256};
use crate::store::util::{Fixture, random};
use roomcast::campaign::driver::Worker;
use roomcast::campaign::imaging::{ImagingWorker, Machine};
use roomcast::demo::lab_boot::LabBoot;
use roomcast_lab::garage::Cluster;
use roomcast_proto::procedure::{Event, State, Step};
use roomcast_store::capture::{self, CaptureOptions};
use roomcast_store::keys::fingerprint;
use roomcast_store::manifest::ImageLabel;
use std::path::{Path, PathBuf};

const PROFILE_FILE: &str = "profiles/lycee-sti2d.yaml";

#[test]
fn step_b_pulls_the_base_image_from_the_region_once_and_refuses_a_foreign_signer() {
    let Some(region) = Region::start_with_room(1) else {
        return;
    };
    // The region (SNE) publishes the base image `lycee-base@1`, signed with its key.
    let base_disk = region.sne.path("lycee-base.img");
    disk(
        &base_disk,
        &[
            (0, random(1, 2 << 20)),
            (4 << 20, b"base system ".repeat(50_000)),
        ],
    );
    let base = region.capture(&base_disk, "lycee-base");
    region.push(&base);

    // Someone with write access publishes `lycee-base@2`, signed with a key no school trusts.
    let rogue = Fixture::new();
    let rogue_disk = rogue.path("rogue.img");
    disk(&rogue_disk, &[(0, random(3, 1 << 20))]);
    let rogue_id = capture::capture(
        &rogue.store,
        &rogue_disk,
        ImageLabel {
            name: "lycee-base".into(),
            version: "2".into(),
            profile: None,
            captured_by: "rogue".into(),
            captured_at: "2026-12-07T00:00:00Z".into(),
        },
        &rogue.signer,
        &CaptureOptions::default(),
        &|_| {},
    )
    .unwrap()
    .id;
    let url: roomcast::region::RemoteUrl = URL.parse().unwrap();
    let envelope = std::fs::read(rogue.store.manifest_path(&rogue_id)).unwrap();
    with_remote(&region.cluster.cluster, &region.writer, URL, |r| {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(r.put(&url.manifest_key(&rogue_id), envelope))
            .unwrap()
    });

    // The school: its own store and signing key, trusting the region's key; the base image absent.
    let Fixture {
        dir,
        store,
        key_file,
        pub_file,
        ..
    } = Fixture::new();
    store.trust(&region.sne.pub_file).unwrap();
    assert!(store.image_ids().unwrap().is_empty());
    let school = Server {
        dir,
        store,
        key: key_file,
        public: pub_file,
        base,
        base_disk: base_disk.clone(),
    };
    // The read-only key reaches step b through the secrets file, as on a school server.
    let secrets = school.dir.path().join("secrets");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&secrets)
            .unwrap();
        writeln!(f, "S3_ACCESS_KEY_ID={}", region.reader.id).unwrap();
        writeln!(f, "S3_SECRET_ACCESS_KEY={}", region.reader.secret).unwrap();
    }

    let school = School {
        master_disk: school.dir.path().join("master.img"),
        srv: school,
        secrets,
        region_key: region.sne.pub_file.clone(),
    };

    // First campaign: b pulls the base image (its signature checked against the region's key),
    // then restores it bit-identical on the master.
    let b = step_b(&region.cluster.cluster, &school, "lycee-base@1");
    assert_eq!(b, Event::StepSucceeded { step: Step::Master });
    let store = &school.srv.store;
    assert_eq!(store.image_ids().unwrap(), vec![base]);
    store.open_verified(&base).unwrap();
    assert_eq!(sha256(&school.master_disk), sha256(&base_disk));
    let chunks = chunks_in(store);
    assert!(chunks > 0);

    // A base image signed by an untrusted key: b refuses, naming the signer and the profile file;
    // nothing of it enters the store.
    let rogue_fp = fingerprint(&rogue.signer.verifying_key());
    match step_b(&region.cluster.cluster, &school, "lycee-base@2") {
        Event::StepFailed {
            step: Step::Master,
            reason,
        } => {
            assert!(
                reason.contains(&format!(
                    "{PROFILE_FILE}: base_image lycee-base@2 from {URL}: "
                )),
                "{reason}"
            );
            assert!(
                reason.contains(&format!("signer {rogue_fp} is not a trusted signer")),
                "{reason}"
            );
            let object = url.object(&url.manifest_key(&rogue_id));
            assert!(reason.contains(&object), "{reason}");
        }
        other => panic!("b with a foreign base image: {other:?}"),
    }
    assert_eq!(store.image_ids().unwrap(), vec![base]);
    assert_eq!(chunks_in(store), chunks);

    // Second campaign, the region's cluster entirely stopped: b finds the base image in the store,
    // pulls nothing, and restores it again.
    let mut region = region;
    for i in 0..3 {
        region.cluster.cluster.stop_node(i);
    }
    let b = step_b(&region.cluster.cluster, &school, "lycee-base@1");
    assert_eq!(b, Event::StepSucceeded { step: Step::Master });
    assert_eq!(sha256(&school.master_disk), sha256(&base_disk));
    assert_eq!(chunks_in(store), chunks);
}

/// A school server for step b: its store and key, the read-only S3 key in a secrets file, the
/// master's disk, and the region's public key (baked into the agents' boot environment).
struct School {
    srv: Server,
    secrets: PathBuf,
    master_disk: PathBuf,
    region_key: PathBuf,
}

/// Step b of one campaign: a fresh worker with the profile's base image (`name@version`) and
/// repository, the master's disk overwritten first.
fn step_b(cluster: &Cluster, school: &School, image: &str) -> Event {
    disk(&school.master_disk, &[(0, random(9, 8 << 20))]);
    let master_node = cluster.room_pc(0);
    let machines = vec![Machine {
        hostname: "B204-M".into(),
        mac: mac_of(master_node),
    }];
    let boot = LabBoot::new(
        Path::new(env!("CARGO_BIN_EXE_roomcast")),
        &school.region_key,
        &school.srv.dir.path().join("agents"),
    )
    .pc("B204-M", master_node.netns(), &school.master_disk);
    let mut cfg = config(&school.srv, cluster.lab(), machines, "B204-M");
    cfg.base_image = image.into();
    cfg.base_image_from = Some(URL.into());
    cfg.profile_file = Some(PROFILE_FILE.into());
    cfg.region_access = roomcast::region::Access {
        endpoint: Some(cluster.endpoint(0)),
        s3_region: None,
        secrets: Some(school.secrets.clone()),
    };
    cluster
        .school()
        .run(move || {
            ImagingWorker::new(cfg, Box::new(boot)).run_step(Step::Master, &State::default())
        })
        .unwrap()
}

/// Chunk files in the store.
fn chunks_in(store: &roomcast_store::Store) -> usize {
    let dirs = std::fs::read_dir(store.root().join("chunks")).unwrap();
    dirs.flatten()
        .map(|d| std::fs::read_dir(d.path()).map_or(0, |f| f.count()))
        .sum()
}
