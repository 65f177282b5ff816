//! Container logs on disk in the CRI format (`<RFC3339Nano> <stream> <F|P> <text>`), size-rotated,
//! and read back for `kubectl logs` (tail, since, timestamps, limit, follow, previous).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use k8s_openapi::jiff::Timestamp;

use crate::runtime::LogOptions;

/// Errors of log files.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The log file of one container instance (`restart` = its restartCount at start).
pub fn log_path(dir: &Path, container: &str, restart: u32) -> PathBuf {
    dir.join(container).join(format!("{restart}.log"))
}

/// Appends a container instance's output to its log file, rotating by size.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: std::fs::File,
    written: u64,
    max_size: u64,
    /// Incomplete line per stream, kept until its newline arrives.
    partial: [Vec<u8>; 2],
}

/// Which stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    fn tag(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

fn cri_time(t: Timestamp) -> String {
    format!("{t:.9}")
}

impl LogWriter {
    /// Opens (creating directories) `path` for appending; rotates past `max_size` bytes, keeping
    /// one rotated file `<path>.1`, as kubelet's `containerLogMaxSize` with `MaxFiles = 2`.
    pub fn open(path: PathBuf, max_size: u64) -> Result<LogWriter, LogError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path,
            file,
            written,
            max_size,
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Writes a chunk of process output; only complete lines are written now.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<(), LogError> {
        let mut buf = std::mem::take(&mut self.partial[stream as usize]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(i) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = buf[start..start + i].to_vec();
            self.record(stream, 'F', &line)?;
            start += i + 1;
        }
        self.partial[stream as usize] = buf[start..].to_vec();
        Ok(())
    }

    /// Writes what is left of unterminated lines (the process has exited).
    pub fn finish(&mut self) -> Result<(), LogError> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.partial[stream as usize]);
            if !rest.is_empty() {
                self.record(stream, 'P', &rest)?;
            }
        }
        self.file.flush().map_err(io_err(&self.path))
    }

    fn record(&mut self, stream: Stream, tag: char, line: &[u8]) -> Result<(), LogError> {
        let mut rec =
            format!("{} {} {tag} ", cri_time(Timestamp::now()), stream.tag()).into_bytes();
        rec.extend_from_slice(line);
        rec.push(b'\n');
        if self.written > 0 && self.written + rec.len() as u64 > self.max_size {
            let rotated = rotated_path(&self.path);
            std::fs::rename(&self.path, &rotated).map_err(io_err(&self.path))?;
            self.file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io_err(&self.path))?;
            self.written = 0;
        }
        self.file.write_all(&rec).map_err(io_err(&self.path))?;
        self.written += rec.len() as u64;
        Ok(())
    }
}

fn rotated_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

/// One parsed CRI log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time: Timestamp,
    /// The bytes the process wrote (a newline restored for full lines).
    pub content: Vec<u8>,
}

/// Parses one line of a CRI log file; `None` for a malformed line.
pub fn parse_record(line: &[u8]) -> Option<Record> {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = text.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let mut content = parts.next().unwrap_or(b"").to_vec();
    if tag == b"F" {
        content.push(b'\n');
    }
    Some(Record { time, content })
}

/// Reads the records of an instance's log (rotated file first).
pub fn read_records(path: &Path) -> Result<Vec<Record>, LogError> {
    let mut out = Vec::new();
    for p in [rotated_path(path), path.to_path_buf()] {
        let f = match std::fs::File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&p)(e)),
        };
        let mut r = std::io::BufReader::new(f);
        let mut line = Vec::new();
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line).map_err(io_err(&p))? == 0 {
                break;
            }
            out.extend(parse_record(&line));
        }
    }
    Ok(out)
}

/// Renders records for a log request (without `follow`): `since`, then `tail`, then
/// timestamps, then the byte limit, as the kubelet log reader applies them.
pub fn render(records: &[Record], opts: &LogOptions) -> Vec<u8> {
    let since = opts.since_time.and_then(|t| Timestamp::try_from(t).ok());
    let kept: Vec<&Record> = records
        .iter()
        .filter(|r| since.is_none_or(|s| r.time >= s))
        .collect();
    let skip = match opts.tail_lines {
        Some(n) => kept.len().saturating_sub(n as usize),
        None => 0,
    };
    let mut out = Vec::new();
    for r in &kept[skip..] {
        out.extend_from_slice(&render_one(r, opts.timestamps));
    }
    if let Some(limit) = opts.limit_bytes {
        out.truncate(limit as usize);
    }
    out
}

/// One record as the user sees it.
pub fn render_one(r: &Record, timestamps: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if timestamps {
        out.extend_from_slice(cri_time(r.time).as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(&r.content);
    out
}

/// The current wall clock, as a log `since` bound helper for callers converting `sinceSeconds`.
pub fn since_seconds(secs: u64) -> SystemTime {
    SystemTime::now() - std::time::Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: &str, c: &str) -> Record {
        Record {
            time: t.parse().expect("time"),
            content: c.as_bytes().to_vec(),
        }
    }

    #[test]
    fn parses_cri_lines() {
        let cases: [(&[u8], Option<Record>); 4] = [
            (
                b"2024-01-02T03:04:05.000000001Z stdout F hello world\n",
                Some(rec("2024-01-02T03:04:05.000000001Z", "hello world\n")),
            ),
            (
                b"2024-01-02T03:04:05Z stderr P no newline",
                Some(rec("2024-01-02T03:04:05Z", "no newline")),
            ),
            (
                b"2024-01-02T03:04:05Z stdout F \n",
                Some(rec("2024-01-02T03:04:05Z", "\n")),
            ),
            (b"garbage\n", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_record(line),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn renders_with_options() {
        let records = vec![
            rec("2024-01-02T03:04:01Z", "one\n"),
            rec("2024-01-02T03:04:02Z", "two\n"),
            rec("2024-01-02T03:04:03Z", "three\n"),
        ];
        let at = |s: &str| -> SystemTime {
            let t: Timestamp = s.parse().expect("time");
            SystemTime::from(t)
        };
        let cases = [
            (LogOptions::default(), "one\ntwo\nthree\n"),
            (
                LogOptions {
                    tail_lines: Some(2),
                    ..Default::default()
                },
                "two\nthree\n",
            ),
            (
                LogOptions {
                    tail_lines: Some(0),
                    ..Default::default()
                },
                "",
            ),
            (
                LogOptions {
                    tail_lines: Some(10),
                    ..Default::default()
                },
                "one\ntwo\nthree\n",
            ),
            (
                LogOptions {
                    since_time: Some(at("2024-01-02T03:04:02Z")),
                    ..Default::default()
                },
                "two\nthree\n",
            ),
            (
                LogOptions {
                    timestamps: true,
                    tail_lines: Some(1),
                    ..Default::default()
                },
                "2024-01-02T03:04:03.000000000Z three\n",
            ),
            (
                LogOptions {
                    limit_bytes: Some(6),
                    ..Default::default()
                },
                "one\ntw",
            ),
        ];
        for (opts, want) in cases {
            assert_eq!(
                String::from_utf8_lossy(&render(&records, &opts)),
                want,
                "{opts:?}"
            );
        }
    }

    #[test]
    fn writer_round_trips_and_rotates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = log_path(dir.path(), "c", 0);
        let mut w = LogWriter::open(path.clone(), 200).expect("open");
        w.write(Stream::Stdout, b"hel").expect("write");
        w.write(Stream::Stderr, b"err line\n").expect("write");
        w.write(Stream::Stdout, b"lo\nsecond\nthird")
            .expect("write");
        w.finish().expect("finish");
        let got: Vec<u8> = read_records(&path)
            .expect("read")
            .iter()
            .flat_map(|r| r.content.clone())
            .collect();
        assert_eq!(
            String::from_utf8_lossy(&got),
            "err line\nhello\nsecond\nthird"
        );

        // Past 200 bytes the file rotates; the rotated part is still read, older data is dropped.
        for i in 0..20 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .expect("write");
        }
        assert!(rotated_path(&path).exists());
        let size = std::fs::metadata(&path).expect("meta").len();
        assert!(size <= 200, "size {size}");
        let text: String = read_records(&path)
            .expect("read")
            .iter()
            .map(|r| String::from_utf8_lossy(&r.content).to_string())
            .collect();
        assert!(text.ends_with("line 18\nline 19\n"), "{text}");
        assert!(!text.contains("err line"), "{text}");
    }
}
