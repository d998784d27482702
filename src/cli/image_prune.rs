//! `roomcast image prune --keep N [ROOMS...]`: masters kept per profile. Of the images captured
//! from one profile (the label's profile, its version after `@` ignored: `win11-sti2d-cao@3` and
//! `@4` are one lineage), the N most recent stay; so does every image a room uses: the image the
//! latest campaign of each room captured (from the journal), and the base image of each room file
//! given (its profile's `base_image`). Images without a profile are never pruned. Then `gc` frees
//! the chunks no image names any more.

use super::exit;
use crate::campaign::journal::Journal;
use clap::Args;
use roomcast_proto::procedure::Event;
use roomcast_store::Store;
use roomcast_store::manifest::ImageId;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `roomcast image prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Images kept per profile (the most recent), besides those in use.
    #[arg(long)]
    keep: usize,
    /// Room files, or folders of them (`rooms/`): their base images are in use.
    rooms: Vec<PathBuf>,
    /// The journal: the image each room's latest campaign captured is in use.
    #[arg(long, env = "ROOMCAST_DB", default_value = crate::inventory::db::DEFAULT_DB_PATH)]
    db: PathBuf,
    /// Say what would go, remove nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Why an image stays.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Keep {
    Recent,
    InUse(String),
    NoProfile,
}

/// Runs `image prune` on `store`; the report goes to stdout.
pub fn run(store: &Store, a: PruneArgs) -> Result<u8, String> {
    let in_use = in_use(store, &a.rooms, &a.db)?;
    let mut lineages: BTreeMap<String, Vec<(String, ImageId)>> = BTreeMap::new();
    let mut verdicts: BTreeMap<ImageId, Option<Keep>> = BTreeMap::new();
    for id in store.image_ids().map_err(|e| e.to_string())? {
        let Ok(u) = store.open_unverified(&id) else {
            verdicts.insert(id, Some(Keep::NoProfile));
            continue;
        };
        let label = &u.manifest_unchecked().label;
        match &label.profile {
            None => {
                verdicts.insert(id, Some(Keep::NoProfile));
            }
            Some(p) => {
                let lineage = p.split('@').next().unwrap_or(p).to_string();
                lineages
                    .entry(lineage)
                    .or_default()
                    .push((label.captured_at.clone(), id));
            }
        }
    }
    for images in lineages.values_mut() {
        images.sort_by(|x, y| y.cmp(x)); // newest first
        for (i, (_, id)) in images.iter().enumerate() {
            let keep = match in_use.get(id) {
                Some(room) => Some(Keep::InUse(room.clone())),
                None if i < a.keep => Some(Keep::Recent),
                None => None,
            };
            verdicts.insert(*id, keep);
        }
    }
    let mut removed = 0;
    for (lineage, images) in &lineages {
        println!("profile {lineage}:");
        for (at, id) in images {
            let what = match &verdicts[id] {
                Some(Keep::Recent) => "kept (recent)".to_string(),
                Some(Keep::InUse(room)) => format!("kept (in use by {room})"),
                Some(Keep::NoProfile) | None => {
                    if !a.dry_run {
                        store.remove_image(id).map_err(|e| e.to_string())?;
                    }
                    removed += 1;
                    if a.dry_run {
                        "would be removed".to_string()
                    } else {
                        "removed".to_string()
                    }
                }
            };
            println!("  {} {at}  {what}", id.short());
        }
    }
    if removed > 0 && !a.dry_run {
        match store.gc() {
            Ok(r) => println!(
                "{removed} image(s) removed; gc freed {} in {} chunk(s)",
                super::image::bytes(r.bytes_freed),
                r.chunks_removed
            ),
            Err(e) => println!(
                "{removed} image(s) removed; their chunks stay until `roomcast image gc` ({e})"
            ),
        }
    } else {
        println!(
            "{removed} image(s) {}",
            if a.dry_run {
                "would be removed"
            } else {
                "removed"
            }
        );
    }
    Ok(exit::OK)
}

/// Images a room uses, with the room's name.
fn in_use(
    store: &Store,
    rooms: &[PathBuf],
    db: &Path,
) -> Result<BTreeMap<ImageId, String>, String> {
    let mut used = BTreeMap::new();
    let today = crate::clock::Clock::today(&crate::clock::SystemClock);
    for target in rooms {
        let files = crate::model::load::walk(target).map_err(|e| e.to_string())?;
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|x| x == "yaml"))
        {
            let plan = crate::model::checked::load_room(f, today)
                .map_err(|e| format!("{}: {e}", f.display()))?
                .plan()
                .map_err(|e| format!("{}: {e}", f.display()))?;
            let id = store
                .resolve(&plan.base_image)
                .map_err(|e| format!("{}: base image {}: {e}", f.display(), plan.base_image))?;
            used.insert(id, format!("{} (base image)", plan.room));
        }
    }
    if db.exists() {
        let journal = Journal::open(db).map_err(|e| e.to_string())?;
        // The latest campaign of each room that captured an image: the room runs that image.
        let mut latest: BTreeMap<String, String> = BTreeMap::new();
        let mut seen_rooms = BTreeSet::new();
        for id in (1..=journal.latest().map_err(|e| e.to_string())?.unwrap_or(0)).rev() {
            let Ok(events) = journal.events(id) else {
                continue;
            };
            let room = events.iter().find_map(|r| match &r.event {
                Event::Started(plan) => Some(plan.room.clone()),
                _ => None,
            });
            let image = events.iter().rev().find_map(|r| match &r.event {
                Event::ImageCaptured { image } => Some(image.clone()),
                _ => None,
            });
            if let (Some(room), Some(image)) = (room, image)
                && seen_rooms.insert(room.clone())
            {
                latest.insert(room, image);
            }
        }
        for (room, image) in latest {
            if let Ok(id) = image.parse::<ImageId>() {
                used.insert(id, room);
            }
        }
    }
    Ok(used)
}
