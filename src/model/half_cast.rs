//! Casts between f32 and f16 in vector code, for plans computed in half precision.
//!
//! tract 0.23.9 casts a tensor element by element, one call into the `half` crate per element,
//! each behind a CPU-feature check. A model computed in f16 that keeps some operators in f32
//! (see `engine::in_half_precision`) has those casts around its widest tensors: in MobileNetV2
//! at 224 they took 74 M of 166 M instructions a frame on the Cortex-A76, against 52 M for all
//! of its f16 matrix products (scripts/insn-profile). [`vectorize_casts`] replaces them, in the
//! optimized plan, by [`HalfCast`]: on aarch64 sixteen elements per loop, four a conversion
//! instruction (FCVTN/FCVTL, part of every ARMv8-A's Advanced SIMD, so no feature check);
//! elsewhere the `half` crate's slice conversion, which uses F16C where the CPU has it.

use tract_core::internal::*;
use tract_core::ops::cast::Cast;

/// A cast between f32 and f16, converting whole slices.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HalfCast {
    /// f16 or f32; the input is the other one.
    pub to: DatumType,
}

impl Op for HalfCast {
    fn name(&self) -> StaticName {
        "HalfCast".into()
    }

    op_as_typed_op!();
}

impl EvalOp for HalfCast {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        Ok(tvec!(cast(&input, self.to)?.into_tvalue()))
    }
}

/// `input` (f32 or f16) as a new tensor of the other type, `to`.
pub fn cast(input: &Tensor, to: DatumType) -> TractResult<Tensor> {
    let from = input.datum_type();
    // SAFETY: uninitialized_dt leaves the elements unwritten; the conversions below write
    // every one of them before the tensor is read.
    let mut output = unsafe { Tensor::uninitialized_dt(to, input.shape())? };
    if from == f32::datum_type() && to == f16::datum_type() {
        f32_to_f16(
            input.try_as_plain_ram()?.as_slice::<f32>()?,
            output.try_as_plain_ram_mut()?.as_slice_mut::<f16>()?,
        );
    } else if from == f16::datum_type() && to == f32::datum_type() {
        f16_to_f32(
            input.try_as_plain_ram()?.as_slice::<f16>()?,
            output.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        );
    } else {
        bail!("HalfCast casts between f32 and f16, not {from:?} to {to:?}");
    }
    Ok(output)
}

impl TypedOp for HalfCast {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(self.to.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// Replaces the optimized plan's casts from f32 to f16 and back by [`HalfCast`]. Run after
/// tract's optimizer, which would not know what to do with a foreign operator.
pub fn vectorize_casts(mut model: TypedModel) -> TractResult<TypedModel> {
    let (single, half) = (f32::datum_type(), f16::datum_type());
    for id in 0..model.nodes().len() {
        let node = model.node(id);
        let Some(cast) = node.op_as::<Cast>() else {
            continue;
        };
        let from = model.outlet_fact(node.inputs[0])?.datum_type;
        if (from, cast.to) == (single, half) || (from, cast.to) == (half, single) {
            let to = cast.to;
            model.node_mut(id).op = Box::new(HalfCast { to });
        }
    }
    Ok(model)
}

/// Converts `src` to half precision, rounding to nearest, ties to even, as `f16::from_f32`.
///
/// # Panics
/// If the slices' lengths differ.
pub fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    assert_eq!(
        src.len(),
        dst.len(),
        "cast between slices of different lengths"
    );
    #[cfg(target_arch = "aarch64")]
    let (src, dst) = {
        let vectors = src.len() / 16 * 16;
        // SAFETY: both slices hold at least `vectors` elements, a multiple of 16, which the
        // loop reads and writes sixteen at a time; the registers it uses are declared.
        unsafe { neon::f32_to_f16(src.as_ptr(), dst.as_mut_ptr().cast(), vectors) };
        (&src[vectors..], &mut dst[vectors..])
    };
    use tract_core::tract_data::half::slice::HalfFloatSliceExt;
    dst.convert_from_f32_slice(src);
}

/// Converts half-precision `src` to f32 (exactly: every f16 is an f32; a signalling NaN comes
/// back quiet, as from `f16::to_f32`).
///
/// # Panics
/// If the slices' lengths differ.
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    assert_eq!(
        src.len(),
        dst.len(),
        "cast between slices of different lengths"
    );
    #[cfg(target_arch = "aarch64")]
    let (src, dst) = {
        let vectors = src.len() / 16 * 16;
        // SAFETY: as in f32_to_f16.
        unsafe { neon::f16_to_f32(src.as_ptr().cast(), dst.as_mut_ptr(), vectors) };
        (&src[vectors..], &mut dst[vectors..])
    };
    use tract_core::tract_data::half::slice::HalfFloatSliceExt;
    src.convert_to_f32_slice(dst);
}

/// The conversion loops. FCVTN and FCVTL round and widen as the FPCR says; Linux starts every
/// process with round-to-nearest-even and no flush-to-zero, which is what `half` computes.
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::asm;

    /// Converts `count` f32 at `src` to f16 bits at `dst`; `count` is a multiple of 16.
    pub(super) unsafe fn f32_to_f16(src: *const f32, dst: *mut u16, count: usize) {
        if count == 0 {
            return;
        }
        unsafe {
            asm!(
                "2:",
                "ld1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{src}], #64",
                "fcvtn v4.4h, v0.4s",
                "fcvtn2 v4.8h, v1.4s",
                "fcvtn v5.4h, v2.4s",
                "fcvtn2 v5.8h, v3.4s",
                "st1 {{v4.8h, v5.8h}}, [{dst}], #32",
                "subs {count}, {count}, #16",
                "b.ne 2b",
                src = inout(reg) src => _,
                dst = inout(reg) dst => _,
                count = inout(reg) count => _,
                out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
                options(nostack),
            );
        }
    }

    /// Converts `count` f16 bits at `src` to f32 at `dst`; `count` is a multiple of 16.
    pub(super) unsafe fn f16_to_f32(src: *const u16, dst: *mut f32, count: usize) {
        if count == 0 {
            return;
        }
        unsafe {
            asm!(
                "2:",
                "ld1 {{v0.8h, v1.8h}}, [{src}], #32",
                "fcvtl v2.4s, v0.4h",
                "fcvtl2 v3.4s, v0.8h",
                "fcvtl v4.4s, v1.4h",
                "fcvtl2 v5.4s, v1.8h",
                "st1 {{v2.4s, v3.4s, v4.4s, v5.4s}}, [{dst}], #64",
                "subs {count}, {count}, #16",
                "b.ne 2b",
                src = inout(reg) src => _,
                dst = inout(reg) dst => _,
                count = inout(reg) count => _,
                out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
                options(nostack),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values where a conversion goes wrong if it goes wrong: signed zeros, f16's limits and
    /// subnormals, ties between two f16 (round to even), overflow to infinity, NaN.
    fn awkward_f32() -> Vec<f32> {
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            65504.0,
            65520.0, // halfway past f16's largest: rounds to infinity
            70000.0,
            -1e9,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            6.1035156e-5,       // the smallest normal f16
            5.9604645e-8,       // the smallest subnormal f16
            2.9802322e-8,       // half of it: a tie, to even (zero)
            8.940697e-8,        // 1.5 of it: a tie, to even (two)
            1e-10,              // below every f16
            1.0 + 1.0 / 2048.0, // between 1 and the next f16: a tie, to even (1)
            1.0 + 3.0 / 2048.0, // a tie, to even (1 + 2^-9)
            0.1,
            -1234.567,
        ];
        // A few hundred more spread over f16's range, so the vector loop and its tail both run.
        values.extend((0..300).map(|i| ((i as f32) - 150.0).powi(3) / 7.0 + i as f32 * 1e-3));
        values
    }

    #[test]
    fn f32_to_f16_rounds_as_the_half_crate_does_for_every_length() {
        let values = awkward_f32();
        for len in [0, 1, 15, 16, 17, 31, 32, 33, values.len()] {
            let src = &values[..len];
            let mut dst = vec![f16::ZERO; len];
            f32_to_f16(src, &mut dst);
            for (i, (s, d)) in src.iter().zip(&dst).enumerate() {
                let expected = f16::from_f32(*s);
                assert!(
                    d.to_bits() == expected.to_bits(),
                    "length {len}, element {i}: {s} became {d} ({:#06x}), expected {expected} ({:#06x})",
                    d.to_bits(),
                    expected.to_bits()
                );
            }
        }
    }

    #[test]
    fn f16_to_f32_is_exact_for_every_bit_pattern() {
        let src: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
        let mut dst = vec![0.0f32; src.len()];
        f16_to_f32(&src, &mut dst);
        for (s, d) in src.iter().zip(&dst) {
            let expected = s.to_f32();
            assert!(
                d.to_bits() == expected.to_bits(),
                "{:#06x} became {d}, expected {expected}",
                s.to_bits()
            );
        }
        // The tail after the last whole vector.
        let mut tail = vec![0.0f32; 21];
        f16_to_f32(&src[1000..1021], &mut tail);
        assert_eq!(tail, dst[1000..1021]);
    }

    /// In a plan: a model whose f32 operator sits between f16 ones casts through HalfCast, and
    /// its outputs are bit for bit those of tract's own casts.
    #[test]
    fn the_plan_casts_through_half_cast_with_tract_s_results() {
        use tract_core::ops::cast::cast;
        use tract_core::ops::math;
        let shape = [2usize, 3, 37];
        let mut model = TypedModel::default();
        let x = model
            .add_source("x", f32::datum_type().fact(shape))
            .expect("source");
        let to_half = model
            .wire_node("to-half", cast(f16::datum_type()), &[x])
            .expect("cast");
        let squared = model
            .wire_node("square", math::square(), &to_half)
            .expect("square");
        let back = model
            .wire_node("to-single", cast(f32::datum_type()), &squared)
            .expect("cast");
        model.select_output_outlets(&back).expect("outputs");
        let mut plain = model.into_decluttered().expect("declutter");
        plain.optimize().expect("optimize");
        let vectorized = vectorize_casts(plain.clone()).expect("vectorize");
        let casts = |m: &TypedModel| {
            (
                m.nodes().iter().filter(|n| n.op_is::<Cast>()).count(),
                m.nodes().iter().filter(|n| n.op_is::<HalfCast>()).count(),
            )
        };
        assert_eq!(casts(&plain), (2, 0));
        assert_eq!(casts(&vectorized), (0, 2));
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|i| (i as f32 - 100.0) * 0.37).collect();
        let input = Tensor::from_shape(&shape, &values).expect("input");
        let run = |m: TypedModel| {
            m.into_runnable()
                .expect("plan")
                .run(tvec![input.clone().into()])
                .expect("run")
                .remove(0)
                .into_tensor()
        };
        let (expected, got) = (run(plain), run(vectorized));
        assert_eq!(got.datum_type(), f32::datum_type());
        assert_eq!(
            got.to_plain_array_view::<f32>().expect("f32"),
            expected.to_plain_array_view::<f32>().expect("f32")
        );
    }
}
