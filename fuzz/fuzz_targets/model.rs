#![no_main]
use lookout::fuzz::Outcome;

libfuzzer_sys::fuzz_target!(
    init: {
        // After libFuzzer's own hook (which aborts): a panic inside tract is caught and
        // listed, one in lookout is still a crash.
        lookout::fuzz::catch_dependency_panics();
    },
    |data: &[u8]| {
        if let Outcome::DependencyPanic(message) = lookout::fuzz::model(data) {
            lookout::fuzz::note_dependency_panic(data, &message);
        }
    }
);
