//! WGSL source as a kernel family builds it: `{{NAME}}` substitutions for its variant, and the
//! optional features the variant uses, declared where it is built. `Kernel::new` writes the
//! `enable` directives from that declaration; guessing them from the text once changed a shader
//! because a comment held the word (fd3d305), so the text is only checked against the
//! declaration, and an undeclared use is an error.

use crate::error::{Error, Result};
use crate::gpu::GpuFeatures;

/// An optional WGSL feature a shader may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShaderFeature {
    /// `f16` types (the KV cache stored as f16, `KvElement::F16`).
    F16,
    /// Subgroup builtins (`subgroupAdd`, `subgroup_size`, ...).
    Subgroups,
}

/// WGSL text with `{{NAME}}` placeholders replaced by explicit values. Variants of a kernel
/// (workgroup size, f16 or f32 storage) are the same file with different substitutions.
#[derive(Clone)]
pub struct ShaderSource {
    text: String,
    f16: bool,
    subgroups: bool,
}

impl ShaderSource {
    pub fn new(template: &str) -> Self {
        ShaderSource {
            text: template.to_string(),
            f16: false,
            subgroups: false,
        }
    }

    pub fn define(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.text = self
            .text
            .replace(&format!("{{{{{name}}}}}"), &value.to_string());
        self
    }

    /// `text` (WGSL needing no substitution) put in front of the source.
    pub fn prepend(mut self, text: &str) -> Self {
        self.text = [text, self.text.as_str()].join("\n");
        self
    }

    /// Declare that this variant uses `feature`.
    pub fn uses(mut self, feature: ShaderFeature) -> Self {
        match feature {
            ShaderFeature::F16 => self.f16 = true,
            ShaderFeature::Subgroups => self.subgroups = true,
        }
        self
    }

    /// [`uses`](Self::uses) for each of `features`.
    pub fn uses_all(self, features: &[ShaderFeature]) -> Self {
        features.iter().fold(self, |s, &f| s.uses(f))
    }

    /// The final text for a device with `device` features: the `enable` directives the
    /// declared features need there prepended. An error if a placeholder was left unfilled or
    /// the text uses a feature it did not declare.
    pub fn finish(self, kernel: &str, device: &GpuFeatures) -> Result<String> {
        if let Some(at) = self.text.find("{{") {
            let rest = &self.text[at..];
            let end = rest.find("}}").map(|e| e + 2).unwrap_or(rest.len().min(40));
            return Err(Error::Gpu(format!(
                "kernel {kernel}: placeholder {} was not defined",
                &rest[..end]
            )));
        }
        if let Some(feature) = undeclared_use(&self.text, self.f16, self.subgroups) {
            return Err(Error::Gpu(format!(
                "kernel {kernel} uses {feature:?} without declaring it (ShaderSource::uses)"
            )));
        }
        let mut wgsl = self.text;
        // Only where the device has shader-f16: elsewhere the directive is itself an error
        // (and a declared f16 variant is not chosen there).
        if self.f16 && device.shader_f16 && !wgsl.contains("enable f16;") {
            wgsl = format!("enable f16;\n{wgsl}");
        }
        // Browsers require the directive for subgroup builtins; naga rejects it.
        if cfg!(target_arch = "wasm32")
            && self.subgroups
            && device.subgroups
            && !wgsl.contains("enable subgroups;")
        {
            wgsl = format!("enable subgroups;\n{wgsl}");
        }
        Ok(wgsl)
    }
}

/// The first feature `text` uses outside comments that was not declared: the word `f16` or an
/// `h`-suffixed literal without `f16`, a `subgroup...` word without `subgroups`.
fn undeclared_use(text: &str, f16: bool, subgroups: bool) -> Option<ShaderFeature> {
    let code = strip_comments(text);
    let words = code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    for word in words.filter(|w| !w.is_empty()) {
        let f16_literal = word.starts_with(|c: char| c.is_ascii_digit())
            && word.ends_with('h')
            && !word.starts_with("0x");
        if !f16 && (word == "f16" || f16_literal) {
            return Some(ShaderFeature::F16);
        }
        if !subgroups && word.starts_with("subgroup") {
            return Some(ShaderFeature::Subgroups);
        }
    }
    None
}

/// `text` without its `//` and (nested) `/* */` comments, each comment a space.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut depth = 0usize;
    while !rest.is_empty() {
        if rest.starts_with("/*") {
            depth += 1;
            rest = &rest[2..];
        } else if depth > 0 && rest.starts_with("*/") {
            depth -= 1;
            rest = &rest[2..];
            if depth == 0 {
                out.push(' ');
            }
        } else if depth == 0 && rest.starts_with("//") {
            rest = rest.find('\n').map_or("", |n| &rest[n..]);
            out.push(' ');
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            if depth == 0 {
                out.push(c);
            }
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: GpuFeatures = GpuFeatures {
        shader_f16: true,
        subgroups: true,
    };

    #[test]
    fn words_in_comments_declare_nothing_and_need_nothing() {
        let text = "// an f16 scale, subgroup sizes\n/* vec4<f16> /* nested f16 */ 1.0h */\n\
                    fn scale_f16(x: u32) -> f32 { return unpack2x16float(x).x; }";
        assert_eq!(undeclared_use(text, false, false), None);
        let wgsl = ShaderSource::new(text).finish("k", &BOTH).unwrap();
        assert_eq!(wgsl, text, "no directive for an undeclared feature");
    }

    #[test]
    fn an_undeclared_feature_is_an_error() {
        for (text, feature) in [
            ("var<storage> kv: array<f16>;", ShaderFeature::F16),
            ("let v = vec4<f16>(x);", ShaderFeature::F16),
            ("let h = 0.5h;", ShaderFeature::F16),
            ("let s = subgroupAdd(x);", ShaderFeature::Subgroups),
            ("@builtin(subgroup_size) n: u32", ShaderFeature::Subgroups),
        ] {
            assert_eq!(undeclared_use(text, false, false), Some(feature), "{text}");
            let err = ShaderSource::new(text).finish("k", &BOTH).unwrap_err();
            assert!(err.to_string().contains(&format!("{feature:?}")), "{err}");
            assert!(ShaderSource::new(text)
                .uses(feature)
                .finish("k", &BOTH)
                .is_ok());
        }
        assert_eq!(undeclared_use("let x = 0x1fu; // 2h", false, false), None);
    }

    #[test]
    fn directives_follow_the_declaration_and_the_device() {
        let text = "var<storage> kv: array<f16>;";
        let f16 = || ShaderSource::new(text).uses(ShaderFeature::F16);
        let wgsl = f16().finish("k", &BOTH).unwrap();
        assert_eq!(wgsl, format!("enable f16;\n{text}"));
        let none = GpuFeatures {
            shader_f16: false,
            subgroups: false,
        };
        assert_eq!(f16().finish("k", &none).unwrap(), text);
        let once = ShaderSource::new(&format!("enable f16;\n{text}")).uses(ShaderFeature::F16);
        assert_eq!(
            once.finish("k", &BOTH).unwrap(),
            format!("enable f16;\n{text}")
        );
        let subgroups = ShaderSource::new("let s = subgroupAdd(x);").uses(ShaderFeature::Subgroups);
        let wgsl = subgroups.finish("k", &BOTH).unwrap();
        assert_eq!(
            wgsl.starts_with("enable subgroups;"),
            cfg!(target_arch = "wasm32"),
            "the directive only where browsers ask for it: naga rejects it"
        );
    }

    #[test]
    fn an_unfilled_placeholder_is_an_error() {
        let err = ShaderSource::new("@workgroup_size({{WG}})")
            .finish("k", &BOTH)
            .unwrap_err();
        assert!(err.to_string().contains("{{WG}}"), "{err}");
    }
}
