//! The texts `--source` and `--sink` take, `scheme[:argument]`: which part of lookout a text
//! belongs to is decided here, once, and the part that owns the scheme parses the rest
//! (`camera:N`, `serial:PATH@BAUD,format=compact`, `gpio:RULES.toml`, …).

/// The first of `schemes` that `spec` starts with, and what follows it; `None` when none
/// does (the text is a path, or `stdout`, or wrong: the caller's fallback says which).
pub fn scheme<'a>(spec: &'a str, schemes: &[&'static str]) -> Option<(&'static str, &'a str)> {
    schemes
        .iter()
        .find_map(|&scheme| Some((scheme, spec.strip_prefix(scheme)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_scheme_wins_and_the_rest_is_kept_whole() {
        let schemes = ["replay:", "camera", "gpio", "serial"];
        assert_eq!(scheme("camera:1", &schemes), Some(("camera", ":1")));
        assert_eq!(scheme("camera", &schemes), Some(("camera", "")));
        assert_eq!(scheme("replay:dir@5", &schemes), Some(("replay:", "dir@5")));
        assert_eq!(
            scheme("serial@9600,format=compact", &schemes),
            Some(("serial", "@9600,format=compact"))
        );
        assert_eq!(scheme("tests/images", &schemes), None);
        assert_eq!(scheme("replay", &schemes), None);
    }
}
