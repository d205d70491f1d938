//! Synthetic weights for benchmarks on machines the model cannot travel to (the GPU machine of
//! `bench/gpu-machine.sh` receives at most 64 MiB): a GGUF's header, with its metadata,
//! tokenizer and tensor table, is kept byte for byte, and every tensor's data is replaced by
//! deterministic pseudo-random valid blocks of its type. Shapes, types and so speed are the
//! real model's; the text it generates is meaningless.

use std::io::Write;

use half::f16;

use crate::error::{Error, Result};
use crate::gguf::Header;
use crate::quant::GgmlType;

/// Byte offsets of the f16 scale fields in one block of `ty` (given a finite, small value so
/// activations stay finite), or `None` for types synthesis does not cover.
fn f16_fields(ty: GgmlType) -> Option<&'static [usize]> {
    Some(match ty {
        GgmlType::F32 | GgmlType::BF16 => &[],
        GgmlType::F16
        | GgmlType::Q4_0
        | GgmlType::Q5_0
        | GgmlType::Q8_0
        | GgmlType::IQ4_NL
        | GgmlType::IQ4_XS => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        _ => return None,
    })
}

/// `n_bytes` of random valid `ty` blocks: random quants, every f16 scale field (and every F32
/// and BF16 value) uniform in [-0.05, 0.05), so products stay finite. `seed` advances. Shared by
/// synthetic models, the kernel benchmark and the kernel tests.
pub fn random_blocks(ty: GgmlType, n_bytes: u64, seed: &mut u64) -> Result<Vec<u8>> {
    let fields = f16_fields(ty)
        .ok_or_else(|| Error::InvalidArgument(format!("random {ty} blocks are not supported")))?;
    let mut next = || {
        *seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (*seed >> 33) as u32
    };
    let small = |bits: u32| (bits as f32 / u32::MAX as f32 - 0.5) * 0.1;
    if ty == GgmlType::F32 {
        return Ok((0..n_bytes / 4)
            .flat_map(|_| small(next()).to_le_bytes())
            .collect());
    }
    if ty == GgmlType::BF16 {
        return Ok((0..n_bytes / 2)
            .flat_map(|_| half::bf16::from_f32(small(next())).to_le_bytes())
            .collect());
    }
    let mut bytes: Vec<u8> = (0..n_bytes).map(|_| next() as u8).collect();
    for block in bytes.chunks_exact_mut(ty.type_size() as usize) {
        for &at in fields {
            let scale = f16::from_f32(small(next()));
            block[at..at + 2].copy_from_slice(&scale.to_le_bytes());
        }
    }
    Ok(bytes)
}

/// The header bytes (metadata and tensor table, padded to the data offset) of `gguf`, which
/// may be a whole file or just such a prefix.
pub fn header_prefix(gguf: &[u8]) -> Result<(Header, &[u8])> {
    let header = Header::parse(gguf, None)?
        .ok_or_else(|| Error::ModelInvalid("the file ends inside its header".into()))?;
    let end = header.data_offset as usize;
    if end > gguf.len() {
        return Err(Error::ModelInvalid(
            "the file ends before its data offset".into(),
        ));
    }
    Ok((header, &gguf[..end]))
}

/// Write `out`: `gguf`'s header and, with `header_only` false, synthetic data for every tensor.
pub fn synthesize(gguf: &[u8], out: &std::path::Path, header_only: bool) -> Result<u64> {
    let (header, prefix) = header_prefix(gguf)?;
    let io = |e| Error::io(format!("writing {}", out.display()), e);
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).map_err(io)?);
    file.write_all(prefix).map_err(io)?;
    let mut written = prefix.len() as u64;
    if !header_only {
        let mut seed = 0x853c_49e6_748f_ea9bu64;
        let mut tensors: Vec<_> = header.tensors.iter().collect();
        tensors.sort_by_key(|t| t.offset);
        for t in tensors {
            let at = header.data_offset + t.offset;
            file.write_all(&vec![0u8; (at - written) as usize])
                .map_err(io)?;
            // Norm weights of 1.0, so activations keep their scale.
            let data = match t.dims.len() {
                1 if t.ty == GgmlType::F32 => 1f32.to_le_bytes().repeat((t.n_bytes / 4) as usize),
                _ => random_blocks(t.ty, t.n_bytes, &mut seed)?,
            };
            file.write_all(&data).map_err(io)?;
            written = at + t.n_bytes;
        }
    }
    file.flush().map_err(io)?;
    Ok(written)
}

/// A random LoRA adapter GGUF for `config`'s model, as llama.cpp writes adapters: every
/// matrix an adapter can adapt (the block projections, and `output.weight` when the model has
/// its own) whose name `adapt` accepts, `lora_a` uniform in ±1/sqrt(n_in) and `lora_b` in
/// ±`amplitude`, stored as `ty` (F32 or F16), `adapter.lora.alpha` = `alpha`. For benchmarks
/// (the cost of an adapter does not depend on its values) and tests.
pub fn random_lora(
    config: &crate::config::Config,
    rank: usize,
    alpha: f32,
    amplitude: f32,
    ty: GgmlType,
    seed: u64,
    adapt: &dyn Fn(&str) -> bool,
) -> Result<Vec<u8>> {
    use crate::gguf::Value;
    if !matches!(ty, GgmlType::F32 | GgmlType::F16) || rank == 0 {
        return Err(Error::InvalidArgument(format!(
            "a random adapter is F32 or F16 of rank >= 1, not {ty} of rank {rank}"
        )));
    }
    let mut state = seed;
    let mut uniform = |scale: f32| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    };
    let encode = |values: Vec<f32>| -> Vec<u8> {
        match ty {
            GgmlType::F16 => values
                .into_iter()
                .flat_map(|v| f16::from_f32(v).to_le_bytes())
                .collect(),
            _ => values.into_iter().flat_map(f32::to_le_bytes).collect(),
        }
    };
    let mut w = crate::gguf_writer::GgufWriter::new();
    w.metadata("general.type", Value::String("adapter".into()))
        .metadata("adapter.type", Value::String("lora".into()))
        .metadata("adapter.lora.alpha", Value::F32(alpha))
        .metadata(
            "general.architecture",
            Value::String(config.arch.name.into()),
        )
        .metadata(
            "general.name",
            Value::String(format!("random-lora-r{rank}")),
        );
    let matrices = config
        .expected_tensors()
        .into_iter()
        .filter(|(name, dims)| dims.len() == 2 && name != crate::config::TOKEN_EMBD && adapt(name));
    for (name, dims) in matrices {
        let (n_in, n_out) = (dims[0], dims[1]);
        let a_scale = 1.0 / (n_in as f32).sqrt();
        let a = (0..rank as u64 * n_in).map(|_| uniform(a_scale)).collect();
        let b = (0..n_out * rank as u64)
            .map(|_| uniform(amplitude))
            .collect();
        w.tensor(
            &format!("{name}.lora_a"),
            &[n_in, rank as u64],
            ty,
            encode(a),
        );
        w.tensor(
            &format!("{name}.lora_b"),
            &[rank as u64, n_out],
            ty,
            encode(b),
        );
    }
    Ok(w.to_bytes())
}
