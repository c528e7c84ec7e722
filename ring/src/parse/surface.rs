//! Surface commands (QXL_CMD_SURFACE) and the primary surface (CREATE_PRIMARY).
//!
//! Surface pixels stay in guest memory; parsing yields the validated guest range holding
//! them. A negative stride means the surface is stored bottom-up: the range still starts at
//! the lowest address, and row 0 is its last `|stride|` bytes.

use vm_memory::{GuestAddress, GuestMemory};

use super::{Context, MAX_SURFACE_BYTES, MAX_SURFACE_DIMENSION, ParseError, ReleaseInfo};
use crate::abi::{
    QXL_SURF_FLAG_KEEP_DATA, QXL_SURFACE_CMD_CREATE, QXL_SURFACE_CMD_DESTROY, QXLPHYSICAL,
    QXLSurfaceCmd, QXLSurfaceCreate, SPICE_SURFACE_FMT_1_A, SPICE_SURFACE_FMT_8_A,
    SPICE_SURFACE_FMT_16_555, SPICE_SURFACE_FMT_16_565, SPICE_SURFACE_FMT_32_ARGB,
    SPICE_SURFACE_FMT_32_xRGB,
};

/// Pixel formats of surfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SurfaceFormat {
    A1,
    A8,
    Rgb555,
    Xrgb8888,
    Rgb565,
    Argb8888,
}

impl SurfaceFormat {
    /// The format of a `SPICE_SURFACE_FMT_*` value.
    #[allow(non_upper_case_globals)] // SPICE_SURFACE_FMT_32_xRGB is the ABI's spelling.
    pub fn from_raw(format: u32) -> Option<Self> {
        Some(match format {
            SPICE_SURFACE_FMT_1_A => Self::A1,
            SPICE_SURFACE_FMT_8_A => Self::A8,
            SPICE_SURFACE_FMT_16_555 => Self::Rgb555,
            SPICE_SURFACE_FMT_32_xRGB => Self::Xrgb8888,
            SPICE_SURFACE_FMT_16_565 => Self::Rgb565,
            SPICE_SURFACE_FMT_32_ARGB => Self::Argb8888,
            _ => return None,
        })
    }

    /// The `SPICE_SURFACE_FMT_*` value.
    pub fn to_raw(self) -> u32 {
        match self {
            Self::A1 => SPICE_SURFACE_FMT_1_A,
            Self::A8 => SPICE_SURFACE_FMT_8_A,
            Self::Rgb555 => SPICE_SURFACE_FMT_16_555,
            Self::Xrgb8888 => SPICE_SURFACE_FMT_32_xRGB,
            Self::Rgb565 => SPICE_SURFACE_FMT_16_565,
            Self::Argb8888 => SPICE_SURFACE_FMT_32_ARGB,
        }
    }

    pub fn bits_per_pixel(self) -> u32 {
        match self {
            Self::A1 => 1,
            Self::A8 => 8,
            Self::Rgb555 | Self::Rgb565 => 16,
            Self::Xrgb8888 | Self::Argb8888 => 32,
        }
    }
}

/// The guest memory holding a surface's pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SurfaceMemory {
    /// Lowest guest address of the pixel block.
    pub addr: GuestAddress,
    /// `height × |stride|` bytes.
    pub len: u64,
}

/// A validated surface CREATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SurfaceCreate {
    pub format: SurfaceFormat,
    pub width: u32,
    pub height: u32,
    /// Negative for bottom-up storage.
    pub stride: i32,
    pub memory: SurfaceMemory,
    /// The guest asks that existing pixels be kept (not cleared).
    pub keep_data: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SurfaceCmdKind {
    Create(SurfaceCreate),
    Destroy,
}

/// A surface command. The CREATE must stay unreleased until the surface is destroyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SurfaceCmd {
    pub release: ReleaseInfo,
    /// Below the ROM's `n_surfaces` (whether it exists is the renderer's to check).
    pub surface_id: u32,
    pub kind: SurfaceCmdKind,
}

/// A validated CREATE_PRIMARY argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimarySurface {
    pub create: SurfaceCreate,
    pub position: u32,
    pub mouse_mode: u32,
    /// `QXL_SURF_TYPE_*` as written by the guest (always PRIMARY in practice).
    pub type_: u32,
    pub flags: u32,
}

/// Checks surface geometry; returns the format and the bytes the surface spans.
///
/// Beyond spice-server's rules (known format, `|stride|` holds a row, no i32::MIN stride,
/// at most 2^31-1 bytes) the stride must be a multiple of 4 (QEMU and pixman need it) and
/// each side between 1 and [`MAX_SURFACE_DIMENSION`].
pub fn validate_surface(
    format: u32,
    width: u32,
    height: u32,
    stride: i32,
) -> Result<(SurfaceFormat, u64), ParseError> {
    let format =
        SurfaceFormat::from_raw(format).ok_or(ParseError::InvalidSurfaceFormat { format })?;
    if width == 0 || height == 0 || width > MAX_SURFACE_DIMENSION || height > MAX_SURFACE_DIMENSION
    {
        return Err(ParseError::InvalidSurfaceSize { width, height });
    }
    let bpp = format.bits_per_pixel();
    let row = (u64::from(width) * u64::from(bpp)).div_ceil(8);
    // unsigned_abs is exact for every i32, i32::MIN included.
    let abs_stride = u64::from(stride.unsigned_abs());
    if stride == i32::MIN || abs_stride < row || abs_stride % 4 != 0 {
        return Err(ParseError::InvalidSurfaceStride { stride, width, bpp });
    }
    let size = u64::from(height) * abs_stride;
    if size > MAX_SURFACE_BYTES {
        return Err(ParseError::SurfaceTooLarge { size });
    }
    Ok((format, size))
}

fn surface_create<M: GuestMemory>(
    ctx: &Context<'_, M>,
    (format, width, height, stride, data, flags): (u32, u32, u32, i32, QXLPHYSICAL, u32),
) -> Result<SurfaceCreate, ParseError> {
    let (format, len) = validate_surface(format, width, height, stride)?;
    let addr = ctx.reference(data, len)?;
    Ok(SurfaceCreate {
        format,
        width,
        height,
        stride,
        memory: SurfaceMemory { addr, len },
        keep_data: flags & QXL_SURF_FLAG_KEEP_DATA != 0,
    })
}

pub(super) fn parse_surface_cmd<M: GuestMemory>(
    ctx: &Context<'_, M>,
    phys: QXLPHYSICAL,
    release: ReleaseInfo,
) -> Result<SurfaceCmd, ParseError> {
    let (cmd, _) = ctx.read::<QXLSurfaceCmd>(phys)?;
    let surface_id = ctx.surface_id(cmd.surface_id)?;
    let kind = match cmd.type_ {
        QXL_SURFACE_CMD_CREATE => {
            let s = cmd.surface_create;
            SurfaceCmdKind::Create(surface_create(
                ctx,
                (s.format, s.width, s.height, s.stride, s.data, cmd.flags),
            )?)
        }
        QXL_SURFACE_CMD_DESTROY => SurfaceCmdKind::Destroy,
        type_ => return Err(ParseError::UnknownSurfaceCmd { type_ }),
    };
    Ok(SurfaceCmd {
        release,
        surface_id,
        kind,
    })
}

/// Validates the CREATE_PRIMARY argument copied from the RAM header.
pub fn parse_primary<M: GuestMemory>(
    ctx: &Context<'_, M>,
    create: &QXLSurfaceCreate,
) -> Result<PrimarySurface, ParseError> {
    let c = *create;
    let surface = surface_create(ctx, (c.format, c.width, c.height, c.stride, c.mem, c.flags))?;
    Ok(PrimarySurface {
        create: surface,
        position: c.position,
        mouse_mode: c.mouse_mode,
        type_: c.type_,
        flags: c.flags,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{BAR, p, put, setup};
    use super::*;
    use crate::abi::{QXLReleaseInfo, QXLSurface};

    fn release() -> ReleaseInfo {
        ReleaseInfo {
            id: 1,
            addr: GuestAddress(BAR),
        }
    }

    #[test]
    fn create_and_destroy() {
        let (mem, slots) = setup();
        let ctx = Context::new(&mem, &slots, 1024);
        let cmd = QXLSurfaceCmd {
            release_info: QXLReleaseInfo { id: 1 },
            surface_id: 3,
            type_: QXL_SURFACE_CMD_CREATE,
            flags: QXL_SURF_FLAG_KEEP_DATA,
            surface_create: QXLSurface {
                format: 32,
                width: 64,
                height: 64,
                stride: -256,
                data: p(0x1000),
            },
        };
        put(&mem, 0x100, cmd);
        let parsed = parse_surface_cmd(&ctx, p(0x100), release()).unwrap();
        let SurfaceCmdKind::Create(create) = parsed.kind else {
            panic!()
        };
        assert_eq!(parsed.surface_id, 3);
        assert_eq!(create.format, SurfaceFormat::Xrgb8888);
        assert_eq!(
            create.memory,
            SurfaceMemory {
                addr: GuestAddress(BAR + 0x1000),
                len: 64 * 256
            }
        );
        assert!(create.keep_data);
        put(
            &mem,
            0x100,
            QXLSurfaceCmd {
                type_: QXL_SURFACE_CMD_DESTROY,
                ..cmd
            },
        );
        assert_eq!(
            parse_surface_cmd(&ctx, p(0x100), release()).unwrap().kind,
            SurfaceCmdKind::Destroy
        );
        put(&mem, 0x100, QXLSurfaceCmd { type_: 2, ..cmd });
        assert!(matches!(
            parse_surface_cmd(&ctx, p(0x100), release()),
            Err(ParseError::UnknownSurfaceCmd { type_: 2 })
        ));
        put(
            &mem,
            0x100,
            QXLSurfaceCmd {
                surface_id: 1024,
                ..cmd
            },
        );
        assert!(matches!(
            parse_surface_cmd(&ctx, p(0x100), release()),
            Err(ParseError::SurfaceIdOutOfRange { .. })
        ));
        // Pixels past the end of the slot.
        let big = QXLSurface {
            format: 32,
            width: 1024,
            height: 1024,
            stride: 4096,
            data: p(0),
        };
        put(
            &mem,
            0x100,
            QXLSurfaceCmd {
                surface_create: big,
                ..cmd
            },
        );
        assert!(matches!(
            parse_surface_cmd(&ctx, p(0x100), release()),
            Err(ParseError::Translate(_))
        ));
    }

    #[test]
    fn geometry_rules() {
        assert!(validate_surface(32, 1, 1, 4).is_ok());
        assert!(validate_surface(1, 33, 1, 8).is_ok());
        assert!(matches!(
            validate_surface(24, 1, 1, 4),
            Err(ParseError::InvalidSurfaceFormat { format: 24 })
        ));
        assert!(matches!(
            validate_surface(32, 0, 1, 4),
            Err(ParseError::InvalidSurfaceSize { .. })
        ));
        for (w, h) in [(8193, 1), (1, 8193), (16384, 16384)] {
            assert!(matches!(
                validate_surface(32, w, h, 4 * w as i32),
                Err(ParseError::InvalidSurfaceSize { .. })
            ));
        }
        for stride in [i32::MIN, 3996, -3996, 4098] {
            assert!(
                matches!(
                    validate_surface(32, 1000, 10, stride),
                    Err(ParseError::InvalidSurfaceStride { .. })
                ),
                "stride {stride}"
            );
        }
        assert_eq!(validate_surface(32, 1000, 10, -4000).unwrap().1, 40_000);
        // The largest surface: 8192 × 8192 at 32 bpp (256 MiB); one padded row more is not.
        assert_eq!(
            validate_surface(32, 8192, 8192, 8192 * 4).unwrap().1,
            256 << 20
        );
        assert!(matches!(
            validate_surface(32, 8192, 8192, 8192 * 4 + 4),
            Err(ParseError::SurfaceTooLarge { .. })
        ));
        assert!(matches!(
            validate_surface(32, 8192, 8192, i32::MAX - 3),
            Err(ParseError::SurfaceTooLarge { .. })
        ));
    }

    #[test]
    fn primary_from_ram_header() {
        let (mem, slots) = setup();
        let ctx = Context::new(&mem, &slots, 1024);
        let create = QXLSurfaceCreate {
            width: 128,
            height: 64,
            stride: 512,
            format: 32,
            flags: QXL_SURF_FLAG_KEEP_DATA,
            mem: crate::memslot::make_phys(2, 0, 0).unwrap(),
            ..Default::default()
        };
        let primary = parse_primary(&ctx, &create).unwrap();
        assert_eq!(
            primary.create.memory.addr,
            GuestAddress(super::super::super::chunks::tests::BAR2)
        );
        assert_eq!(primary.create.memory.len, 512 * 64);
        let bad = QXLSurfaceCreate {
            stride: 100,
            ..create
        };
        assert!(parse_primary(&ctx, &bad).is_err());
    }
}
