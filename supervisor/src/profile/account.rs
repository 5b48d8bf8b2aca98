//! The passwd and group database, read before any fork: `tenant.user` → uid, gid and
//! groups; a uid → its account name and home (the tenant's USER, LOGNAME and HOME).

use std::ffi::{CStr, CString};
use std::path::PathBuf;

use super::Ids;

/// A passwd entry, as far as the tenant's environment needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The login name.
    pub name: String,
    /// The home directory.
    pub home: PathBuf,
}

/// Turns `user` / `uid` / `gid` into numeric credentials, resolving names now (before
/// any fork) so the launch child needs no lookups. An error names the key at fault.
pub(super) fn resolve_ids(
    user: Option<&str>,
    uid: Option<u32>,
    gid: Option<u32>,
) -> Result<Option<Ids>, (&'static str, String)> {
    match (user, uid, gid) {
        (None, None, None) => Ok(None),
        (Some(_), Some(_), _) => Err(("uid", "give either user or uid/gid, not both".into())),
        (Some(_), None, Some(_)) => Err(("gid", "give either user or uid/gid, not both".into())),
        (None, Some(uid), gid) => Ok(Some(Ids {
            uid,
            gid: gid.unwrap_or(uid),
            groups: Vec::new(),
        })),
        (None, None, Some(_)) => Err(("gid", "gid needs a uid".into())),
        (Some(name), None, None) => lookup_user(name).map(Some).map_err(|m| ("user", m)),
    }
}

fn lookup_user(name: &str) -> Result<Ids, String> {
    let cname = CString::new(name).map_err(|_| format!("user {name:?} contains a NUL byte"))?;
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let found = with_growing_buffer(|buf| {
        // SAFETY: the name is NUL-terminated; `pwd` and `result` are writable and `buf`
        // is writable for its length, all alive across the call. Only the numeric
        // fields are read afterwards, never the strings that point into `buf`.
        unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                pwd.as_mut_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        }
    });
    if !found || result.is_null() {
        return Err(format!("no such user {name:?} on this host"));
    }
    // SAFETY: getpwnam_r succeeded and `result` points at `pwd`, now initialised.
    let pwd = unsafe { pwd.assume_init() };
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut count = groups.len() as libc::c_int;
    // SAFETY: `groups` is writable for `count` entries; the name is NUL-terminated.
    let rc =
        unsafe { libc::getgrouplist(cname.as_ptr(), pwd.pw_gid, groups.as_mut_ptr(), &mut count) };
    if rc < 0 {
        return Err(format!(
            "user {name:?} is in more than {} groups",
            groups.len()
        ));
    }
    groups.truncate(count as usize);
    Ok(Ids {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        groups,
    })
}

/// Whether `name` has a passwd entry (what `getpwnam` answers, through the reentrant
/// call like the other lookups here).
pub fn user_exists(name: &str) -> bool {
    let Ok(cname) = CString::new(name) else {
        return false;
    };
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let found = with_growing_buffer(|buf| {
        // SAFETY: the name is NUL-terminated; `pwd` and `result` are writable and
        // `buf` is writable for its length, all alive across the call. No returned
        // string is read: `result` is only compared with null.
        unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                pwd.as_mut_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        }
    });
    found && !result.is_null()
}

/// Whether `gid` has a group entry (what `getgrgid` answers, reentrant).
pub fn group_exists(gid: libc::gid_t) -> bool {
    let mut grp = std::mem::MaybeUninit::<libc::group>::uninit();
    let mut result: *mut libc::group = std::ptr::null_mut();
    let found = with_growing_buffer(|buf| {
        // SAFETY: `grp` and `result` are writable and `buf` is writable for its
        // length, all alive across the call. No returned string is read: `result` is
        // only compared with null.
        unsafe {
            libc::getgrgid_r(
                gid,
                grp.as_mut_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        }
    });
    found && !result.is_null()
}

/// Runs a `get*_r` lookup with a buffer that doubles while the call says ERANGE, as
/// the non-reentrant `getpwnam` and `getgrgid` grow theirs (a group with many members
/// outgrows 16 KiB); whether the call returned 0.
fn with_growing_buffer(mut lookup: impl FnMut(&mut [u8]) -> libc::c_int) -> bool {
    let mut buf = vec![0u8; 16384];
    loop {
        match lookup(&mut buf) {
            0 => return true,
            libc::ERANGE if buf.len() < 1 << 24 => buf.resize(buf.len() * 2, 0),
            _ => return false,
        }
    }
}

/// The passwd entry of `uid`, if it has one.
pub fn account_of(uid: libc::uid_t) -> Option<Account> {
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buf = vec![0u8; 16384];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call: `pwd` and `result` are writable,
    // `buf` is writable for its length and outlives every use of the returned strings.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            pwd.as_mut_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded and `result` points at `pwd`, now initialised; its
    // strings point into `buf`, alive until the end of this function, and are
    // NUL-terminated (or null, checked).
    let (name, home) = unsafe {
        let pwd = pwd.assume_init();
        let text = |p: *const libc::c_char| {
            (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
        };
        (text(pwd.pw_name)?, text(pwd.pw_dir).unwrap_or_default())
    };
    Some(Account {
        name,
        home: PathBuf::from(if home.is_empty() { "/".into() } else { home }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_an_account() {
        let root = account_of(0).expect("uid 0 has a passwd entry");
        assert_eq!(root.name, "root");
        assert_eq!(root.home, PathBuf::from("/root"));
        assert_eq!(account_of(4_000_000_000), None);
    }

    #[test]
    fn ids_name_the_conflicting_key() {
        assert_eq!(
            resolve_ids(Some("root"), Some(1), None).unwrap_err().0,
            "uid"
        );
        assert_eq!(
            resolve_ids(Some("root"), None, Some(1)).unwrap_err().0,
            "gid"
        );
        assert_eq!(resolve_ids(None, None, Some(1)).unwrap_err().0, "gid");
        let ids = resolve_ids(None, Some(7), None).unwrap().unwrap();
        assert_eq!((ids.uid, ids.gid), (7, 7));
        assert_eq!(
            resolve_ids(Some("root"), None, None).unwrap().unwrap().uid,
            0
        );
    }
}
