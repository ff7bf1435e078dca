//! "Did you mean" hints: the closest known name to a misspelt one.
//!
//! Used wherever a user names something supportwatch knows (a field, a notifier, a step, a
//! mailbox), so a typo is answered with the right spelling instead of a bare "unknown".

/// The candidate within a few edits of `wrong`, for "did you mean" hints.
pub fn closest<'a, S: AsRef<str>>(wrong: &str, candidates: &'a [S]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(wrong, c.as_ref()), c.as_ref()))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2) && *d > 0)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("feilds", "fields"), 2);
        assert_eq!(edit_distance("url", "url"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
