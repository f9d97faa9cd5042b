//! The known kustomizations that kustomize v4 builds and kustomize v5 (the
//! one in every kubectl since 1.27) refuses, recognised by v5's error, and
//! the ways out: render with a kustomize v4 (`render.kustomize`), or change
//! the kustomization so both read it.

/// One v4-to-v5 incompatibility.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Incompatibility {
    /// Text of kustomize v5's error that identifies it (quotes unescaped).
    signature: &'static str,
    /// What the kustomization does that v5 refuses.
    what: &'static str,
    /// The change to the kustomization that v4 and v5 both accept.
    fix: &'static str,
}

/// Every known incompatibility that makes kustomize v5 fail. The others
/// (`bases`, `patchesStrategicMerge`, `patchesJson6902`, `vars`,
/// `commonLabels`, `imageTags`) are only deprecated: v5 warns and builds.
const KNOWN: &[Incompatibility] = &[
    Incompatibility {
        signature: "cannot unmarshal string into Go struct field Kustomization.patches of type types.Patch",
        what: "`patches:` lists bare file names, which kustomize v4 reads as strategic-merge \
               patches and v5 refuses",
        fix: "write each entry as `- path: FILE` (`patches: [{path: FILE}]`), which v4 reads too",
    },
    Incompatibility {
        signature: "unknown field \"inventory\"",
        what: "the `inventory:` field, which kustomize v5 removed",
        fix: "remove `inventory:` (berth records what it applied on its own)",
    },
];

/// The known incompatibility that kustomize's error `stderr` reports, if any.
pub(crate) fn known(stderr: &str) -> Option<&'static Incompatibility> {
    // kubectl logs the error as err="...", with its quotes escaped
    let stderr = stderr.replace("\\\"", "\"");
    KNOWN.iter().find(|known| stderr.contains(known.signature))
}

impl Incompatibility {
    /// What happened and both ways out, for the overlay or directory
    /// `subject` (as shown to the user).
    pub(crate) fn explain(&self, subject: &str) -> String {
        format!(
            "this is a known kustomize v4-to-v5 incompatibility: {what}. The kustomization is \
             valid for kustomize v4: render it with one (`render: {{ kustomize: PATH_OR_NAME }}` \
             in berth.yaml, at the top level or in environments.ENV.render; BERTH_KUSTOMIZE=PATH \
             for one run), or change it for v5: in {subject} or a base or component it uses, {fix}",
            what = self.what,
            fix = self.fix,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_patch_file_names_are_recognised_as_kubectl_and_kustomize_print_them() {
        for stderr in [
            "E1206 19:12:26.700940    5841 run.go:72] \"command failed\" err=\"invalid \
             Kustomization: json: cannot unmarshal string into Go struct field \
             Kustomization.patches of type types.Patch\"",
            "Error: invalid Kustomization: json: cannot unmarshal string into Go struct field \
             Kustomization.patches of type types.Patch",
        ] {
            let known = known(stderr).expect(stderr);
            let text = known.explain("overlays/staging");
            for part in [
                "known kustomize v4-to-v5 incompatibility: `patches:` lists bare file names",
                "`render: { kustomize: PATH_OR_NAME }` in berth.yaml",
                "environments.ENV.render",
                "BERTH_KUSTOMIZE=PATH for one run",
                "in overlays/staging or a base or component it uses, write each entry as \
                 `- path: FILE`",
            ] {
                assert!(text.contains(part), "{part:?} in {text}");
            }
        }
    }

    #[test]
    fn the_removed_inventory_field_is_recognised_with_escaped_quotes() {
        let stderr = "E1206 run.go:72] \"command failed\" err=\"invalid Kustomization: json: \
                      unknown field \\\"inventory\\\"\"";
        let text = known(stderr).unwrap().explain("overlays/prod");
        assert!(
            text.contains("the `inventory:` field, which kustomize v5 removed"),
            "{text}"
        );
        assert!(text.contains("remove `inventory:`"), "{text}");
    }

    #[test]
    fn other_errors_are_not_called_incompatibilities() {
        for stderr in [
            "error: unable to find one of 'kustomization.yaml', 'kustomization.yml' or \
             'Kustomization' in directory '/repo/overlays/nope'",
            "Error: json: unknown field \"foo\"",
            "Error: json: cannot unmarshal number into Go struct field Image.images.newTag of \
             type string",
        ] {
            assert_eq!(known(stderr), None, "{stderr}");
        }
    }
}
