//! `.npz` files that `numpy.load` opens: writing (byte-reproducible: every zip
//! entry carries the same fixed timestamp) and reading with clear errors.

use std::io::{Cursor, Read, Seek};
use std::path::Path;

use npyz::WriterBuilder;

use crate::error::{Error, Result};

/// One array to write: a name, a shape and row-major data.
pub enum Array<'a> {
    F64(&'a [usize], &'a [f64]),
    I64(&'a [usize], &'a [i64]),
    /// A 0-d unicode string (numpy dtype `<U…`).
    Str(&'a str),
}

/// How an archive's entries are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// Deflated (`np.savez_compressed`): for files written once, such as a target's data.
    Deflated,
    /// As they are (`np.savez`): for traces rewritten at every checkpoint,
    /// where deflating millions of draws would take most of the write.
    Stored,
}

/// An npz archive in memory, with pinned timestamps.
pub fn to_bytes(arrays: &[(&str, Array<'_>)], packing: Packing) -> Result<Vec<u8>> {
    let io = |e: std::io::Error| Error::invalid(format!("writing npz: {e}"));
    let mut w = npyz::npz::NpzWriter::new(Cursor::new(Vec::new()));
    let method = match packing {
        Packing::Deflated => zip::CompressionMethod::Deflated,
        Packing::Stored => zip::CompressionMethod::Stored,
    };
    let opts = zip::write::FileOptions::default().compression_method(method).last_modified_time(zip::DateTime::default());
    for (name, arr) in arrays {
        match arr {
            Array::F64(shape, data) => write_one(&mut w, name, shape, data.iter().copied(), opts).map_err(io)?,
            Array::I64(shape, data) => write_one(&mut w, name, shape, data.iter().copied(), opts).map_err(io)?,
            Array::Str(text) => write_str(&mut w, name, text, opts).map_err(io)?,
        }
    }
    let cursor = w.zip_writer().finish().map_err(|e| Error::invalid(format!("writing npz: {e}")))?;
    Ok(cursor.into_inner())
}

fn write_one<T: npyz::AutoSerialize, W: std::io::Write + Seek>(
    w: &mut npyz::npz::NpzWriter<W>,
    name: &str,
    shape: &[usize],
    data: impl Iterator<Item = T>,
    opts: zip::write::FileOptions,
) -> std::io::Result<()> {
    let shape: Vec<u64> = shape.iter().map(|s| *s as u64).collect();
    let mut a = w.array::<T>(name, opts)?.default_dtype().shape(&shape).begin_nd()?;
    a.extend(data)?;
    a.finish()
}

fn write_str<W: std::io::Write + Seek>(w: &mut npyz::npz::NpzWriter<W>, name: &str, text: &str, opts: zip::write::FileOptions) -> std::io::Result<()> {
    let ts: npyz::TypeStr = format!("<U{}", text.chars().count().max(1)).parse().map_err(std::io::Error::other)?;
    let mut a = w.array::<str>(name, opts)?.dtype(npyz::DType::Plain(ts)).shape(&[]).begin_nd()?;
    a.push(text)?;
    a.finish()
}

/// What a numeric array held before it was read as f64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Float,
}

/// A numeric array read as f64, with its shape and what it held.
#[derive(Debug, Clone, PartialEq)]
pub struct Numbers {
    pub shape: Vec<usize>,
    pub kind: Kind,
    pub values: Vec<f64>,
}

/// Reads one numeric array (float, integer or bool dtype); `what` names it in errors.
fn decode<R: Read>(f: npyz::NpyFile<R>, what: &str, path: &Path) -> Result<Numbers> {
    let shape: Vec<usize> = f.shape().iter().map(|s| *s as usize).collect();
    let bad = |e: std::io::Error| Error::bad_file(path, format!("{what}: {e}"));
    let fortran = f.order() == npyz::Order::Fortran;
    let dtype = f.dtype();
    let npyz::DType::Plain(ts) = &dtype else {
        return Err(Error::bad_file(path, format!("{what} has a structured dtype; expected numbers")));
    };
    let (kind, values): (Kind, Vec<f64>) = match (ts.type_char(), ts.size_field()) {
        (npyz::TypeChar::Float, 8) => (Kind::Float, f.into_vec::<f64>().map_err(bad)?),
        (npyz::TypeChar::Float, 4) => (Kind::Float, f.into_vec::<f32>().map_err(bad)?.into_iter().map(f64::from).collect()),
        (npyz::TypeChar::Int, 8) => (Kind::Int, f.into_vec::<i64>().map_err(bad)?.into_iter().map(|v| v as f64).collect()),
        (npyz::TypeChar::Int, 4) => (Kind::Int, f.into_vec::<i32>().map_err(bad)?.into_iter().map(f64::from).collect()),
        (npyz::TypeChar::Uint, 8) => (Kind::Int, f.into_vec::<u64>().map_err(bad)?.into_iter().map(|v| v as f64).collect()),
        (npyz::TypeChar::Bool, 1) => (Kind::Bool, f.into_vec::<bool>().map_err(bad)?.into_iter().map(|v| f64::from(u8::from(v))).collect()),
        _ => return Err(Error::bad_file(path, format!("{what} has dtype {ts}; expected float, integer or bool"))),
    };
    let values = if fortran { fortran_to_c(&shape, &values) } else { values };
    Ok(Numbers { shape, kind, values })
}

/// Reads the numeric array of a `.npy` file (as `numpy.save` writes it).
pub fn read_npy(path: &Path) -> Result<Numbers> {
    npy_from_bytes(&std::fs::read(path).map_err(|e| Error::io(path, e))?, path)
}

/// [`read_npy`] of a file already in memory (`path` is for messages).
pub fn npy_from_bytes(bytes: &[u8], path: &Path) -> Result<Numbers> {
    let f = npyz::NpyFile::new(bytes).map_err(|e| Error::bad_file(path, format!("not a readable .npy file ({e})")))?;
    decode(f, "the array", path)
}

/// A read npz archive, with the path it came from for error messages.
pub struct Npz {
    archive: npyz::npz::NpzArchive<Cursor<Vec<u8>>>,
    path: std::path::PathBuf,
}

impl Npz {
    /// Opens `path`; a missing, truncated or non-zip file is an error naming it.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(bytes, path)
    }

    /// Reads an archive already in memory (`path` is for messages).
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Self> {
        let archive = npyz::npz::NpzArchive::new(Cursor::new(bytes)).map_err(|e| Error::bad_file(path, format!("not a readable .npz archive ({e})")))?;
        Ok(Self { archive, path: path.to_path_buf() })
    }

    /// The names of the arrays in the archive.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.archive.array_names().map(str::to_string).collect();
        v.sort();
        v
    }

    /// Whether the archive holds an array called `name`.
    pub fn has(&self, name: &str) -> bool {
        self.archive.array_names().any(|n| n == name)
    }

    fn file(&mut self, name: &str) -> Result<npyz::NpyFile<impl Read + '_>> {
        let names = self.names().join(", ");
        let path = self.path.clone();
        match self.archive.by_name(name) {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(Error::bad_file(&path, format!("no array `{name}` (has: {names})"))),
            Err(e) => Err(Error::bad_file(&path, format!("array `{name}` is unreadable ({e})"))),
        }
    }

    /// A numeric array as f64 (from any float, integer or bool dtype), with its shape.
    pub fn f64(&mut self, name: &str) -> Result<(Vec<usize>, Vec<f64>)> {
        let path = self.path.clone();
        let f = self.file(name)?;
        decode(f, &format!("array `{name}`"), &path).map(|n| (n.shape, n.values))
    }

    /// [`Npz::f64`], refusing NaN and ±inf with the array's name and the first bad index.
    pub fn finite_f64(&mut self, name: &str) -> Result<(Vec<usize>, Vec<f64>)> {
        let (shape, data) = self.f64(name)?;
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            let at: Vec<usize> = unravel(i, &shape);
            return Err(Error::bad_file(&self.path, format!("array `{name}` holds {} at index {at:?}: every value must be finite", data[i])));
        }
        Ok((shape, data))
    }

    /// A scalar number (a 0-d or one-element array).
    pub fn scalar(&mut self, name: &str) -> Result<f64> {
        let (shape, v) = self.f64(name)?;
        if v.len() != 1 {
            return Err(Error::bad_file(&self.path, format!("array `{name}` must be a scalar, has shape {shape:?}")));
        }
        Ok(v[0])
    }

    /// A string (numpy `U` or `S` dtype, 0-d or one element).
    pub fn string(&mut self, name: &str) -> Result<String> {
        let path = self.path.clone();
        let f = self.file(name)?;
        let bad = |e: std::io::Error| Error::bad_file(&path, format!("array `{name}` must be a string: {e}"));
        let npyz::DType::Plain(ts) = f.dtype() else {
            return Err(Error::bad_file(&path, format!("array `{name}` must be a string")));
        };
        let mut v: Vec<String> = match ts.type_char() {
            npyz::TypeChar::UnicodeStr => f.into_vec::<String>().map_err(bad)?,
            npyz::TypeChar::ByteStr => f.into_vec::<Vec<u8>>().map_err(bad)?.into_iter().map(|b| String::from_utf8_lossy(&b).into_owned()).collect(),
            _ => return Err(Error::bad_file(&path, format!("array `{name}` has dtype {ts}; expected a string"))),
        };
        if v.len() != 1 {
            return Err(Error::bad_file(&path, format!("array `{name}` must hold one string, has {}", v.len())));
        }
        Ok(v.remove(0))
    }
}

/// The C-order (row-major) index of flat position `i` in an array of `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut at = vec![0; shape.len()];
    for (a, &n) in at.iter_mut().zip(shape).rev() {
        *a = i % n.max(1);
        i /= n.max(1);
    }
    at
}

/// Reorders the values of a Fortran-ordered (column-major) array of `shape`
/// into C order (row-major), as numpy would lay out `np.ascontiguousarray`.
fn fortran_to_c(shape: &[usize], data: &[f64]) -> Vec<f64> {
    // Column-major strides: the first axis varies fastest.
    let mut strides = vec![1; shape.len()];
    for k in 1..shape.len() {
        strides[k] = strides[k - 1] * shape[k - 1];
    }
    (0..data.len()).map(|i| data[unravel(i, shape).iter().zip(&strides).map(|(a, s)| a * s).sum::<usize>()]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_byte_identical() {
        let x = [1.0, 2.5, -3.0, 4.0, 5.0, 6.0];
        let w = [7i64, 8];
        for packing in [Packing::Deflated, Packing::Stored] {
            let a = to_bytes(&[("X", Array::F64(&[2, 3], &x)), ("w", Array::I64(&[2], &w)), ("act", Array::Str("tanh"))], packing).unwrap();
            let b = to_bytes(&[("X", Array::F64(&[2, 3], &x)), ("w", Array::I64(&[2], &w)), ("act", Array::Str("tanh"))], packing).unwrap();
            assert_eq!(a, b);
            let mut z = Npz::from_bytes(a, Path::new("mem.npz")).unwrap();
            assert_eq!(z.names(), vec!["X", "act", "w"]);
            assert_eq!(z.string("act").unwrap(), "tanh");
            assert_eq!(z.f64("X").unwrap(), (vec![2, 3], x.to_vec()));
            assert_eq!(z.f64("w").unwrap().1, vec![7.0, 8.0]);
            let err = z.f64("Y").unwrap_err().to_string();
            assert!(err.contains("no array `Y`"), "{err}");
        }
        // Stored entries hold the 8 bytes of every value as they are; deflated ones of repeats fewer.
        let ones = [1.0; 1000];
        let (stored, deflated) = (
            to_bytes(&[("X", Array::F64(&[1000], &ones))], Packing::Stored).unwrap(),
            to_bytes(&[("X", Array::F64(&[1000], &ones))], Packing::Deflated).unwrap(),
        );
        assert!(stored.len() > 8000 && deflated.len() < 1000, "{} {}", stored.len(), deflated.len());
    }

    #[test]
    fn truncated_and_foreign_files_are_errors() {
        let a = to_bytes(&[("X", Array::F64(&[1], &[1.0]))], Packing::Deflated).unwrap();
        let cut = a[..a.len() / 2].to_vec();
        assert!(Npz::from_bytes(cut, Path::new("cut.npz")).is_err());
        let err = Npz::from_bytes(b"hello".to_vec(), Path::new("x.txt")).err().unwrap().to_string();
        assert!(err.starts_with("x.txt: not a readable .npz"), "{err}");
    }

    #[test]
    fn npy_files_read_with_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.npy");
        let mut bytes = Vec::new();
        let mut w = npyz::WriteOptions::new().default_dtype().shape(&[3]).writer(&mut bytes).begin_nd().unwrap();
        w.extend([true, false, true]).unwrap();
        w.finish().unwrap();
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(read_npy(&path).unwrap(), Numbers { shape: vec![3], kind: Kind::Bool, values: vec![1.0, 0.0, 1.0] });
        std::fs::write(&path, b"not npy").unwrap();
        let err = read_npy(&path).unwrap_err().to_string();
        assert!(err.contains("m.npy: not a readable .npy file"), "{err}");
    }
}
