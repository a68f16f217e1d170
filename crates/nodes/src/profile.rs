//! The kubelet a run plays (`--kubelet-version`): what differs between the releases modelled,
//! 1.28 to 1.33. Where a number was measured (kubelet 1.28.7, `/work/shared/k8s-reference/`)
//! and where it was read from the code or kept as a guess is in docs/hollow-nodes.md.

/// A kubelet release, by minor version (1.MINOR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeletVersion {
    minor: u32,
}

/// The oldest minor version modelled.
pub const OLDEST: u32 = 28;
/// The newest minor version modelled (the default).
pub const NEWEST: u32 = 33;

impl Default for KubeletVersion {
    fn default() -> KubeletVersion {
        KubeletVersion { minor: NEWEST }
    }
}

impl std::str::FromStr for KubeletVersion {
    type Err = String;
    /// `1.28`, `v1.28` or `1.28.7` (the patch release changes nothing modelled).
    fn from_str(s: &str) -> Result<KubeletVersion, String> {
        let t = s.trim().trim_start_matches('v');
        let mut parts = t.split('.');
        let minor = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("1"), Some(m), patch, None)
                if patch.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) =>
            {
                m.parse::<u32>().ok()
            }
            _ => None,
        };
        match minor {
            Some(m) if (OLDEST..=NEWEST).contains(&m) => Ok(KubeletVersion { minor: m }),
            _ => Err(format!("modelled versions are 1.{OLDEST}–1.{NEWEST}")),
        }
    }
}

impl std::fmt::Display for KubeletVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "1.{}", self.minor)
    }
}

impl KubeletVersion {
    /// The minor version.
    pub fn minor(self) -> u32 {
        self.minor
    }

    /// `nodeInfo.kubeletVersion` and `kubeProxyVersion`.
    pub fn node_info(self) -> String {
        format!("v1.{}.0", self.minor)
    }

    /// The node-status loop GETs the node's own Node (from the watch cache) every
    /// `nodeStatusUpdateFrequency`: kubelets before 1.31 (measured on 1.28.7: 5.80 per
    /// minute); newer ones read it from their informer's lister.
    pub fn gets_own_node(self) -> bool {
        self.minor < 31
    }

    /// A deleted pod: the status manager's syncs after its containers are killed. 1.28.7
    /// (measured): GET + patch (containers terminated), GET + patch (final phase), GET + delete
    /// with grace 0, so 3 GETs, 2 patches, 1 delete. Later releases: one GET + patch, then the
    /// delete, as before issue 21 (not measured).
    pub fn deletion_syncs(self) -> DeletionSyncs {
        if self.minor == 28 {
            DeletionSyncs {
                status_patches: 2,
                get_before_delete: true,
            }
        } else {
            DeletionSyncs {
                status_patches: 1,
                get_before_delete: false,
            }
        }
    }
}

/// What a pod's deletion costs a kubelet, before its grace-0 delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletionSyncs {
    /// GET + status patch pairs (the first with containers terminated).
    pub status_patches: u32,
    /// One more GET before the delete (the status manager's sync that deletes).
    pub get_before_delete: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_users_write_them_and_unmodelled_ones_are_refused() {
        let v = |s: &str| s.parse::<KubeletVersion>().map(KubeletVersion::minor);
        assert_eq!(v("1.28"), Ok(28));
        assert_eq!(v("v1.30"), Ok(30));
        assert_eq!(v("1.28.7"), Ok(28));
        assert_eq!(KubeletVersion::default().minor(), 33);
        assert_eq!(
            v("1.27"),
            Err("modelled versions are 1.28–1.33".to_string())
        );
        for bad in ["1.34", "2.28", "1", "1.28.", "latest", "1.28.x", ""] {
            assert!(v(bad).is_err(), "{bad}");
        }
        let k = |m: u32| KubeletVersion { minor: m };
        assert!(k(30).gets_own_node() && !k(31).gets_own_node());
        assert_eq!(k(28).deletion_syncs().status_patches, 2);
        assert_eq!(k(29).deletion_syncs().status_patches, 1);
        assert_eq!(k(28).node_info(), "v1.28.0");
    }
}
