//! The predictor service; its issue fills it in.
fn main() {
    eprintln!("predictor: not built yet");
}
