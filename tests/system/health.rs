//! Board health end to end: `lookout run` on a board profile with `[health]` on, its sysfs a
//! fake tree (`LOOKOUT_SYSFS_ROOT`): the SoC temperature and the firmware's throttling word in
//! every record, and a `throttled` event when the board says it slows itself.

use crate::common;
use crate::common::{json_lines, lookout_command, stderr, stdout};

#[test]
fn a_throttled_board_says_so_in_the_records_and_an_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("sysroot");
    let zone = root.join("sys/class/thermal/thermal_zone0");
    std::fs::create_dir_all(&zone).expect("zone");
    std::fs::write(zone.join("type"), "cpu-thermal\n").expect("type");
    std::fs::write(zone.join("temp"), "81234\n").expect("temp");
    let firmware = root.join("sys/devices/platform/soc/soc:firmware");
    std::fs::create_dir_all(&firmware).expect("firmware");
    // Soft temperature limit and frequency capped now; under-voltage earlier since boot.
    std::fs::write(firmware.join("get_throttled"), "1000a\n").expect("word");
    let host = std::fs::read_to_string(common::repo("boards/host.toml")).expect("host");
    let board = dir.path().join("warm.toml");
    std::fs::write(
        &board,
        host.replace("name = \"host\"", "name = \"warm\"").replace(
            "(the default).\nenabled = false",
            "(the default).\nenabled = true",
        ),
    )
    .expect("board");
    let out = lookout_command()
        .args(["run", "--source", "tests/images/detect", "--board"])
        .arg(&board)
        .env("LOOKOUT_SYSFS_ROOT", &root)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&stdout(&out));
    let records: Vec<_> = lines.iter().filter(|l| l.get("seq").is_some()).collect();
    assert_eq!(records.len(), 8);
    for record in &records {
        let soc = record["health"]["soc_temp_c"]
            .as_f64()
            .expect("temperature");
        assert!((soc - 81.234).abs() < 1e-3, "{record}");
        assert_eq!(record["health"]["throttled"], 0x1000a);
    }
    let events: Vec<_> = lines.iter().filter(|l| l.get("event").is_some()).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"], "throttled");
    assert_eq!(events[0]["source"], "board");
    assert_eq!(
        events[0]["message"],
        "the board slows itself: frequency capped, soft temperature limit at 81.2 °C (get_throttled 0x1000a)"
    );
    // Without the tree (this machine has no thermal zone or firmware file, or the board
    // profile turns it off), records carry no health.
    let out = lookout_command()
        .args(["run", "--source", "tests/images/detect"])
        .output()
        .expect("runs");
    assert!(stdout(&out).lines().all(|l| !l.contains("\"health\"")));
}
