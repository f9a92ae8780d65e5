//! Where `pmxcfs --export-db` and `--repair-db` put entries as plain
//! files: a path below the output directory for every entry, decided
//! here (pure) and written by the edge (`dbtools`). No name can leave the
//! directory, none is longer than a file system takes, and no two entries
//! get the same path.

use std::collections::{HashMap, HashSet};

use pmxcfs_wire::dcdb::DT_DIR;

use super::dbrepair::{unusable_name, SetAside};
use super::memdb::Row;
use super::paths::join;

/// An entry and the path it is written at, relative to the output
/// directory (`/` between components). Parents come before their entries.
#[derive(Debug, PartialEq, Eq)]
pub struct Placed<'a> {
    pub path: Vec<u8>,
    pub row: &'a Row,
}

/// Every entry of a tree placed, with what an administrator must know.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    pub placed: Vec<Placed<'a>>,
    /// Entries written under another name than their own.
    pub notes: Vec<String>,
    /// Entries of a broken tree: left out, or written beside another.
    pub problems: Vec<String>,
}

/// The longest file name Linux file systems take.
pub const NAME_MAX: usize = 255;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The paths given so far, and every directory they imply.
#[derive(Default)]
struct Taken(HashSet<Vec<u8>>);

impl Taken {
    /// `path`, or `path.inode-N` when it is taken already.
    fn claim(&mut self, path: Vec<u8>, inode: u64) -> (Vec<u8>, bool) {
        let (path, clash) = if self.0.contains(&path) {
            (
                [&path[..], format!(".inode-{inode}").as_bytes()].concat(),
                true,
            )
        } else {
            (path, false)
        };
        for (i, &b) in path.iter().enumerate() {
            if b == b'/' {
                self.0.insert(path[..i].to_vec());
            }
        }
        self.0.insert(path.clone());
        (path, clash)
    }
}

/// The tree of `rows` from the root; `shown_dir` is how the output
/// directory is named in the notes and problems.
pub fn plan<'a>(rows: &'a [Row], shown_dir: &str) -> Plan<'a> {
    let mut p = Plan::default();
    let mut children: HashMap<u64, Vec<&Row>> = HashMap::new();
    for r in rows.iter().filter(|r| r.inode != 0) {
        children.entry(r.parent).or_default().push(r);
    }
    for list in children.values_mut() {
        list.sort_by_key(|r| (r.name.clone(), r.inode));
    }
    let shown = |path: &[u8]| {
        if path.is_empty() {
            shown_dir.to_string()
        } else {
            format!("{shown_dir}/{}", text(path))
        }
    };
    let mut taken = Taken::default();
    let mut reached = HashSet::new();
    let mut stack: Vec<(u64, Vec<u8>)> = vec![(0, Vec::new())];
    while let Some((inode, at)) = stack.pop() {
        for &r in children.get(&inode).map(Vec::as_slice).unwrap_or(&[]) {
            reached.insert(r.inode);
            if unusable_name(&r.name).is_some() {
                p.problems.push(format!(
                    "inode {} in {}: the name '{}' cannot be a file name",
                    r.inode,
                    shown(&at),
                    text(&r.name)
                ));
                continue;
            }
            let mut name = r.name.clone();
            if name.len() > NAME_MAX {
                // C takes names up to its own limit; a file system's is 255 bytes.
                name.truncate(NAME_MAX - 32);
                name.extend_from_slice(format!("...inode-{}", r.inode).as_bytes());
                p.notes.push(format!(
                    "inode {}: a name of {} bytes, longer than a file name can be: written as {}",
                    r.inode,
                    r.name.len(),
                    shown(&join(&at, &name))
                ));
            }
            let wanted = join(&at, &name);
            let (path, clash) = taken.claim(wanted.clone(), r.inode);
            if clash {
                p.problems.push(format!(
                    "found entry with duplicate name {}: inode {} written as {}",
                    shown(&wanted),
                    r.inode,
                    shown(&path)
                ));
            }
            if r.entry_type == DT_DIR {
                stack.push((r.inode, path.clone()));
            }
            p.placed.push(Placed { path, row: r });
        }
    }
    for r in rows
        .iter()
        .filter(|r| r.inode != 0 && !reached.contains(&r.inode))
    {
        p.problems.push(format!(
            "inode {} '{}' does not reach the root (its parent {} is missing or not a directory)",
            r.inode,
            text(&r.name),
            r.parent
        ));
    }
    p
}

/// The entries a repair set aside, each at the path it had in the tree
/// (a component no file system can hold becomes `_` and the name with its
/// dots and NULs made `_`); a path given twice gets `.inode-N`.
pub fn place_set_aside(entries: &[SetAside]) -> Vec<Placed<'_>> {
    let mut taken = Taken::default();
    entries
        .iter()
        .map(|e| {
            let parts: Vec<Vec<u8>> = e
                .path
                .split('/')
                .map(|part| match unusable_name(part.as_bytes()) {
                    None => part.as_bytes().to_vec(),
                    Some(_) => format!("_{}", part.replace(['.', '\0'], "_")).into_bytes(),
                })
                .collect();
            let (path, _) = taken.claim(parts.join(&b'/'), e.row.inode);
            Placed { path, row: &e.row }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmxcfs_wire::dcdb::DT_REG;

    fn row(inode: u64, parent: u64, entry_type: u8, name: &[u8]) -> Row {
        Row {
            inode,
            parent,
            version: inode,
            writer: 0,
            mtime: 0,
            entry_type,
            name: name.to_vec(),
            data: None,
        }
    }

    fn paths(p: &[Placed]) -> Vec<(u64, String)> {
        p.iter().map(|x| (x.row.inode, text(&x.path))).collect()
    }

    #[test]
    fn a_tree_is_placed_parents_first_with_every_problem_named() {
        let long = vec![b'n'; 256];
        let rows = [
            row(0, 0, DT_REG, b"__version__"),
            row(2, 0, DT_DIR, b"nodes"),
            row(3, 2, DT_REG, b"a"),
            row(4, 2, DT_REG, b"a"),
            row(5, 2, DT_REG, b".."),
            row(6, 99, DT_REG, b"lost"),
            row(7, 2, DT_REG, &long),
        ];
        let p = plan(&rows, "/out");
        let placed = paths(&p.placed);
        assert_eq!(placed[0], (2, "nodes".into()));
        assert!(placed.contains(&(3, "nodes/a".into())));
        assert!(placed.contains(&(4, "nodes/a.inode-4".into())));
        let short = format!("nodes/{}...inode-7", "n".repeat(NAME_MAX - 32));
        assert!(placed.contains(&(7, short.clone())));
        assert_eq!(placed.len(), 4);
        assert_eq!(
            p.notes,
            [format!("inode 7: a name of 256 bytes, longer than a file name can be: written as /out/{short}")]
        );
        let problems = p.problems.join("\n");
        assert!(problems.contains("found entry with duplicate name /out/nodes/a: inode 4 written as /out/nodes/a.inode-4"), "{problems}");
        assert!(
            problems.contains("inode 5 in /out/nodes: the name '..' cannot be a file name"),
            "{problems}"
        );
        assert!(
            problems.contains("inode 6 'lost' does not reach the root"),
            "{problems}"
        );
    }

    #[test]
    fn set_aside_entries_keep_their_paths_made_safe_and_unique() {
        let aside = |path: &str, inode: u64, entry_type: u8| SetAside {
            path: path.into(),
            row: row(inode, 0, entry_type, b"x"),
        };
        let entries = [
            aside("a/b", 3, DT_REG),
            aside("a", 4, DT_DIR),
            aside("nodes/..", 5, DT_REG),
            aside("a/b", 6, DT_REG),
        ];
        assert_eq!(
            paths(&place_set_aside(&entries)),
            [
                (3, "a/b".into()),
                (4, "a.inode-4".into()),
                (5, "nodes/___".into()),
                (6, "a/b.inode-6".into()),
            ]
        );
    }
}
