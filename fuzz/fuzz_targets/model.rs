#![no_main]
use lookout::fuzz::Outcome;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A panic inside tract is caught and listed (lookout::fuzz::install_panic_hook); one in
    // lookout is a crash, as libFuzzer's own hook makes every other panic.
    if let Outcome::DependencyPanic(message) = lookout::fuzz::model(data) {
        lookout::fuzz::note_dependency_panic(data, &message);
    }
});
