//! Rules split into groups by whether their source and destination sets are
//! small (EffiCuts): both engines build one structure per group, so that
//! rules wide in an address field are not replicated by cuts on it (trees)
//! or do not multiply the states of narrow rules (DFA). Each engine decides
//! what is small its own way.

/// Split `order` into `n` groups (1..4, see [`Config::partitions`](super::Config::partitions)) by
/// `small(rule)` = (small source, small destination), keeping the order.
pub(super) fn partition_by(
    order: &[u32],
    n: u8,
    small: impl Fn(u32) -> (bool, bool),
) -> Vec<Vec<u32>> {
    let mut groups: Vec<Vec<u32>> = vec![Vec::new(); 4];
    for &i in order {
        let (s, d) = small(i);
        let g = match n {
            // Small source | the rest.
            2 => usize::from(!s),
            // Small source | small destination | wide in both.
            3 => match (s, d) {
                (true, _) => 0,
                (false, true) => 1,
                (false, false) => 2,
            },
            _ => usize::from(s) | (usize::from(d) << 1),
        };
        groups[g].push(i);
    }
    groups
}
