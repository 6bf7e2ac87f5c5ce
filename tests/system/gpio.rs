//! `lookout run --sink gpio` as a person meets it on a machine without GPIO: every mistake is
//! one clear error line before any frame. (The rule engine's exact pin sequences are tested
//! against embedded-hal-mock pins in src/results/gpio.rs.)

use crate::common::{assert_clean_failure, lookout};

fn run_with(sink: &str) -> std::process::Output {
    lookout(&["run", "-s", "tests/images/detect", "--sink", sink])
}

#[test]
fn a_board_without_rules_says_where_to_put_them() {
    assert_clean_failure(
        &run_with("gpio"),
        &["no GPIO rules", "[[gpio.rules]]", "board host"],
    );
}

#[test]
fn rules_files_are_checked_before_the_chip_is_looked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[[rules]]\nwhen = \"hexagon\"\npin = 17\n").expect("write");
    let sink = format!("gpio:{}", rules.display());
    assert_clean_failure(
        &run_with(&sink),
        &["rules[0].when", "\"hexagon\"", "circle, square, triangle"],
    );

    std::fs::write(
        &rules,
        "[[rules]]\nwhen = \"circle\"\npin = 17\n[[rules]]\nwhen = \"square\"\npin = 17\n",
    )
    .expect("write");
    assert_clean_failure(
        &run_with(&sink),
        &[
            "rules.toml",
            "rules[1].pin",
            "line 17 is already rules[0].pin",
        ],
    );

    assert_clean_failure(
        &run_with("gpio:/no/such/rules.toml"),
        &["/no/such/rules.toml"],
    );
}

#[test]
fn no_gpio_chip_is_named_with_what_was_looked_for() {
    if std::path::Path::new("/dev/gpiochip0").exists() {
        return; // a board: the chip may well be there
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "chip_label = \"pinctrl-rp1\"\n[[rules]]\nwhen = \"triangle\"\npin = 17\n",
    )
    .expect("write");
    assert_clean_failure(
        &run_with(&format!("gpio:{}", rules.display())),
        &[
            "no GPIO chip labelled \"pinctrl-rp1\"",
            "no GPIO character devices",
        ],
    );
}
