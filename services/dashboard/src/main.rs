//! The dashboard service; its issue fills it in.
fn main() {
    eprintln!("dashboard: not built yet");
}
