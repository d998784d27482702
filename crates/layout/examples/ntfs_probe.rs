//! Prints what roomcast's NTFS reader sees in an NTFS image or partition:
//! `cargo run -p roomcast-layout --example ntfs_probe -- IMAGE [PATH]`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: ntfs_probe IMAGE [FILE-IN-IMAGE]");
        std::process::exit(2);
    };
    let f = std::fs::File::open(path).expect("open image");
    match roomcast_layout::ntfs::probe(&f) {
        None => println!("not NTFS"),
        Some(Err(e)) => println!("error: {e}"),
        Some(Ok(m)) => {
            println!(
                "fs {} used {} bytes in {} ranges",
                m.fs,
                m.used.bytes(),
                m.used.ranges().len()
            );
            for (n, b) in &m.discarded {
                println!("discarded {n}: {b} bytes");
            }
        }
    }
    println!(
        "holds Windows: {}",
        roomcast_layout::ntfs::holds_windows(&f)
    );
    if let Some(p) = args.get(2) {
        match roomcast_layout::ntfs::read_file(&f, p, 1 << 20) {
            Ok(Some(b)) => println!(
                "{p}: {} bytes: {:?}",
                b.len(),
                String::from_utf8_lossy(&b[..b.len().min(200)])
            ),
            Ok(None) => println!("{p}: not found"),
            Err(e) => println!("{p}: error: {e}"),
        }
    }
}
