//! The users `listen` follows: `--follow` (split by clap) and `--follow-file`, merged,
//! duplicates removed, at most [`MAX_FOLLOWS`].

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use crate::args::{parse_user_id, ListenArgs, MAX_FOLLOWS};

/// Every user to follow, sorted and each once: `--follow` and the file's ids. A problem (an
/// unreadable file, a bad line, no id at all, too many) is a usage error, said in the text.
pub(crate) fn collect(args: &ListenArgs) -> Result<Vec<u64>, String> {
    let mut all: BTreeSet<u64> = args.follow.iter().copied().collect();
    if let Some(path) = &args.follow_file {
        all.extend(read_file(path)?);
    }
    check(all)
}

/// The ids of `--follow-file` `path` (`-`: stdin).
pub(crate) fn read_file(path: &Path) -> Result<Vec<u64>, String> {
    let name = path.display();
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| format!("cannot read --follow-file {name}: {e}"))?;
    parse_file(&text).map_err(|(line, why)| format!("--follow-file {name} line {line}: {why}"))
}

/// One id per line; `#` starts a comment, blank lines are skipped. A bad line is returned
/// with its number (from 1).
pub(crate) fn parse_file(text: &str) -> Result<Vec<u64>, (usize, String)> {
    let mut ids = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let id = parse_user_id(content).map_err(|why| (index + 1, why))?;
        ids.push(id);
    }
    Ok(ids)
}

/// The set as a sorted list, if it has 1 to [`MAX_FOLLOWS`] ids.
pub(crate) fn check(all: BTreeSet<u64>) -> Result<Vec<u64>, String> {
    if all.is_empty() {
        return Err("no user id to follow: give --follow or a --follow-file with ids".to_owned());
    }
    if all.len() > MAX_FOLLOWS {
        return Err(format!(
            "{} distinct user ids given (--follow and --follow-file); at most {MAX_FOLLOWS} are allowed",
            all.len()
        ));
    }
    Ok(all.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_take_one_id_a_line_with_comments_and_blank_lines() {
        let text = "# users\n12\n\n  34  # a comment\n12\r\n56\n";
        assert_eq!(parse_file(text), Ok(vec![12, 34, 12, 56]));
        assert_eq!(parse_file(""), Ok(vec![]));
    }

    #[test]
    fn a_bad_line_is_named_by_number() {
        let (line, why) = parse_file("1\n2\nx3\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(why.contains("not a decimal number"), "{why}");
        assert_eq!(parse_file("1,2\n").unwrap_err().0, 1);
        assert!(parse_file("\n0\n").unwrap_err().1.contains("start at 1"));
    }

    #[test]
    fn the_set_is_sorted_distinct_and_bounded() {
        assert_eq!(check([3, 1, 2].into()), Ok(vec![1, 2, 3]));
        assert!(check(BTreeSet::new()).unwrap_err().contains("no user id"));
        let at_limit: BTreeSet<u64> = (1..=MAX_FOLLOWS as u64).collect();
        assert_eq!(check(at_limit).unwrap().len(), MAX_FOLLOWS);
        let over: BTreeSet<u64> = (1..=MAX_FOLLOWS as u64 + 1).collect();
        assert!(check(over)
            .unwrap_err()
            .contains("100001 distinct user ids given"));
    }
}
