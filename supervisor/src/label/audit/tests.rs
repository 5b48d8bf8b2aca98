//! Tests for `audit.rs`: each verdict, the report lines, and `run_audit`'s walk.

use super::*;
use crate::label::mcs::Label;
use crate::label::xattr::set_label;
use crate::label::xattr::tests::xattr_dir;
use std::os::unix::fs::symlink;

fn entry(name: &str, uid: u32, label: (u32, u32), home: PathBuf, net: &str) -> Entry {
    Entry {
        name: name.into(),
        uid,
        gid: uid,
        label: Label::new(label.0, label.1).unwrap(),
        home,
        address: net.parse().unwrap(),
    }
}

/// Two tenants with homes under `root`: pg-a (s0:c0,c2) and pg-b (s0:c1,c2).
fn tenants(root: &Path) -> Vec<Entry> {
    let a = entry(
        "pg-a",
        200_001,
        (0, 2),
        root.join("home/pg-a"),
        "127.1.1.0/24",
    );
    let b = entry(
        "pg-b",
        200_002,
        (1, 2),
        root.join("home/pg-b"),
        "127.1.2.0/24",
    );
    for e in [&a, &b] {
        fs::create_dir_all(&e.home).unwrap();
    }
    vec![a, b]
}

fn verdict(path: &Path, entries: &[Entry]) -> Verdict {
    audit_path(path, entries).unwrap().verdict
}

#[test]
fn every_verdict() {
    let dir = xattr_dir();
    let entries = tenants(dir.path());
    let (a_home, b_label) = (&entries[0].home, entries[1].label.to_string());
    let file = |rel: &str, label: Option<&str>| {
        let path = dir.path().join(rel);
        fs::write(&path, "x").unwrap();
        if let Some(label) = label {
            set_label(&path, label).unwrap();
        }
        path
    };
    let ok = file("home/pg-a/ok", Some("s0:c0,c2"));
    std::os::unix::fs::chown(&ok, Some(200_001), Some(200_001)).unwrap();
    let audit = audit_path(&ok, &entries).unwrap();
    assert_eq!(audit.verdict, Verdict::Ok);
    assert_eq!(
        audit.to_string(),
        format!(
            "{}: owner 200001:200001, label s0:c0,c2, tenant pg-a (expects s0:c0,c2): ok",
            ok.display()
        )
    );
    assert_eq!(
        verdict(&file("home/pg-a/none", None), &entries),
        Verdict::Unlabeled
    );
    let theirs = file("home/pg-a/theirs", Some(&b_label));
    let audit = audit_path(&theirs, &entries).unwrap();
    assert_eq!(
        audit.verdict,
        Verdict::Mislabeled {
            label_of: Some("pg-b".into())
        }
    );
    assert!(
        audit
            .to_string()
            .ends_with("mislabeled (label of tenant pg-b)"),
        "{audit}"
    );
    let stray = file("home/pg-a/stray", Some("s0:c7,c8"));
    assert_eq!(
        verdict(&stray, &entries),
        Verdict::Mislabeled { label_of: None }
    );

    let foreign = file("foreign", Some("s0:c0,c2"));
    let audit = audit_path(&foreign, &entries).unwrap();
    assert_eq!(
        audit.verdict,
        Verdict::Foreign {
            label_of: Some("pg-a".into())
        }
    );
    assert!(
        audit
            .to_string()
            .contains("label s0:c0,c2, no tenant: foreign (label of tenant pg-a)"),
        "{audit}"
    );
    let unknown = file("unknown", Some("s0:c7,c8"));
    assert_eq!(
        verdict(&unknown, &entries),
        Verdict::Foreign { label_of: None }
    );
    let plain = file("plain", None);
    assert!(audit_path(&plain, &entries)
        .unwrap()
        .to_string()
        .ends_with("label none, no tenant: unmanaged"));

    // Homes match by whole components: pg-ab is not inside pg-a.
    fs::create_dir(dir.path().join("home/pg-ab")).unwrap();
    assert_eq!(
        verdict(&file("home/pg-ab/f", None), &entries),
        Verdict::Unmanaged
    );
    // A symlink is judged where it lives, by its own label, whatever it points at.
    let link = a_home.join("link");
    symlink(&foreign, &link).unwrap();
    assert_eq!(verdict(&link, &entries), Verdict::Unlabeled);
    // A path reached through `..` or a symlinked directory is located canonically.
    let via_dots = dir.path().join("home/pg-b/../pg-a/ok");
    assert_eq!(verdict(&via_dots, &entries), Verdict::Ok);
    symlink(a_home, dir.path().join("alias")).unwrap();
    assert_eq!(verdict(&dir.path().join("alias/ok"), &entries), Verdict::Ok);
    assert_eq!(verdict(a_home, &entries), Verdict::Unlabeled);
}

#[test]
fn run_audit_walks_reports_and_judges() {
    let dir = xattr_dir();
    let entries = tenants(dir.path());
    let home = entries[0].home.clone();
    set_label(&home, "s0:c0,c2").unwrap();
    fs::create_dir(home.join("sub")).unwrap();
    set_label(&home.join("sub"), "s0:c0,c2").unwrap();
    fs::write(home.join("sub/f"), "x").unwrap();
    set_label(&home.join("sub/f"), "s0:c0,c2").unwrap();
    symlink(dir.path(), home.join("sub/up")).unwrap();
    set_label(&home.join("sub/up"), "s0:c0,c2").unwrap();

    let run = |paths: &[PathBuf], recursive: bool| {
        let mut out = Vec::new();
        let clean = run_audit(paths, recursive, &entries, &mut out).unwrap();
        (clean, String::from_utf8(out).unwrap())
    };
    let (clean, out) = run(std::slice::from_ref(&home), true);
    assert!(clean, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    // home, sub, sub/f, sub/up; the symlink is reported, not followed.
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines.iter().all(|l| l.ends_with(": ok")), "{out}");
    assert!(lines[3].starts_with(&format!("{}:", home.join("sub/up").display())));

    let (clean, out) = run(std::slice::from_ref(&home), false);
    assert_eq!((clean, out.lines().count()), (true, 1));

    fs::write(home.join("sub/bad"), "x").unwrap();
    let (clean, out) = run(std::slice::from_ref(&home), true);
    assert!(
        !clean && out.contains("sub/bad: owner 0:0, label none, tenant pg-a"),
        "{out}"
    );

    let (clean, out) = run(&["127.1.2.7".into(), "10.0.0.1".into()], false);
    assert!(clean);
    assert_eq!(
        out,
        "127.1.2.7: tenant pg-b (range 127.1.2.0/24, label s0:c1,c2)\n\
         10.0.0.1: no tenant's range holds this address\n"
    );
    let missing = dir.path().join("missing");
    let (clean, out) = run(std::slice::from_ref(&missing), false);
    assert!(
        !clean && out.starts_with(&format!("{}: cannot audit:", missing.display())),
        "{out}"
    );
}

#[test]
fn addresses_and_the_table() {
    let entries = vec![
        entry(
            "pg-a",
            200_001,
            (0, 2),
            "/srv/h/pg-a".into(),
            "127.1.1.0/24",
        ),
        entry(
            "postgres-main",
            200_010,
            (4, 5),
            "/srv/h/postgres-main".into(),
            "127.1.10.0/24",
        ),
    ];
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    assert_eq!(
        audit_address(ip("127.1.10.200"), &entries).unwrap().name,
        "postgres-main"
    );
    assert!(audit_address(ip("127.1.11.1"), &entries).is_none());

    let mut out = Vec::new();
    list(
        &entries,
        Path::new("/var/lib/supervise/tenants.toml"),
        &mut out,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "NAME           UID     LABEL     HOME                  ADDRESSES\n\
         pg-a           200001  s0:c0,c2  /srv/h/pg-a           127.1.1.0/24\n\
         postgres-main  200010  s0:c4,c5  /srv/h/postgres-main  127.1.10.0/24\n"
    );
    let mut out = Vec::new();
    list(&[], Path::new("/var/lib/supervise/tenants.toml"), &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "no tenants are registered in /var/lib/supervise/tenants.toml\n"
    );
}
