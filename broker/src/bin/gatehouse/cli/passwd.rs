//! `gatehouse passwd`: add, change or delete an entry of a password file (the `Password`
//! authentication method), like `mosquitto_passwd`, writing argon2id hashes.
//!
//! ```text
//! gatehouse passwd -c FILE USER          # create (or overwrite) FILE with USER, prompting
//! gatehouse passwd FILE USER             # add USER or change their password, prompting
//! gatehouse passwd -b FILE USER PASSWORD # the same, password on the command line
//! gatehouse passwd --password-stdin FILE USER < password.txt
//! gatehouse passwd -D FILE USER          # delete USER
//! ```
//!
//! Other lines (other users, `$7$` entries written by `mosquitto_passwd`, comments) are kept
//! as they are. The file is replaced atomically (a temporary file in the same folder,
//! flushed to disk, then renamed over it), so the broker, which reloads the file when it
//! changes, never reads half of it. A new file gets mode 0600; an existing one keeps its
//! mode and, when run as root, its owner (so a file owned by the broker's user stays
//! readable to it).

use std::fs;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use std::ffi::OsString;

use clap::{Args, Parser};
use gatehouse::auth::password::file::{check_user_name, Document};
use gatehouse::auth::password::hash::hash_new;

/// Add, change or delete a user of a password file (the `Password` authentication method),
/// like mosquitto_passwd. New hashes are argon2id; other lines, mosquitto_passwd's `$7$`
/// entries included, are kept. The file is replaced atomically (mode 0600 when new).
#[derive(Parser)]
#[command(name = "gatehouse passwd", bin_name = "gatehouse passwd")]
pub struct PasswdArgs {
    /// Create a new password file, replacing FILE if it exists.
    #[arg(short = 'c', long = "create", conflicts_with = "delete")]
    create: bool,
    /// Delete USER from FILE rather than add or change them.
    #[arg(short = 'D', long = "delete", conflicts_with_all = ["batch", "password_stdin"])]
    delete: bool,
    /// Batch mode: the password is the third argument (it shows in the process list and
    /// the shell history; prefer --password-stdin in scripts).
    #[arg(
        short = 'b',
        long = "batch",
        requires = "password",
        conflicts_with = "password_stdin"
    )]
    batch: bool,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    /// The password file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The user name (no `:`).
    #[arg(value_name = "USER")]
    user: String,
    /// The password, with -b only.
    #[arg(value_name = "PASSWORD", requires = "batch")]
    password: Option<String>,
}

/// What the main parser sees of `passwd` (only reached when an option such as `--config`
/// comes before it: `passwd` is dispatched before the main parser runs).
#[derive(Args)]
pub struct Forwarded {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _rest: Vec<OsString>,
}

/// `gatehouse passwd ...` (`argv` starts at `passwd`).
pub fn main(argv: &[OsString]) -> ExitCode {
    run(PasswdArgs::parse_from(argv))
}

/// `gatehouse --config x passwd ...`: refused, since `-c` means create here.
pub fn misplaced() -> ExitCode {
    eprintln!(
        "gatehouse passwd: write it first, `gatehouse passwd [-c] [-D] [-b] FILE USER [PASSWORD]` (it takes no configuration; -c means create)"
    );
    ExitCode::from(2)
}

#[derive(Debug, thiserror::Error)]
enum PasswdError {
    #[error("{0}")]
    Usage(String),
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> PasswdError + '_ {
    move |source| PasswdError::Io {
        path: path.to_owned(),
        source,
    }
}

pub fn run(args: PasswdArgs) -> ExitCode {
    match passwd(args) {
        Ok(done) => {
            eprintln!("gatehouse passwd: {done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatehouse passwd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn passwd(args: PasswdArgs) -> Result<String, PasswdError> {
    check_user_name(&args.user)
        .map_err(|why| PasswdError::Usage(format!("user `{}`: {why}", args.user)))?;
    // Write next to the real file when FILE is a symbolic link.
    let path = fs::canonicalize(&args.file).unwrap_or_else(|_| args.file.clone());
    let existing = match fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_at(&path)(e)),
    };
    let mut doc = match (&existing, args.create) {
        (_, true) => Document::default(),
        (Some(text), false) => Document::read(text),
        (None, false) => {
            return Err(PasswdError::Usage(format!(
                "{} does not exist; create it with -c",
                path.display()
            )))
        }
    };
    let done = if args.delete {
        if !doc.delete(&args.user) {
            return Err(PasswdError::Usage(format!(
                "user `{}` is not in {}",
                args.user,
                path.display()
            )));
        }
        format!("deleted user `{}` from {}", args.user, path.display())
    } else {
        let password = read_password(&args)?;
        if password.is_empty() {
            return Err(PasswdError::Usage("empty password".into()));
        }
        let hash = hash_new(password.as_bytes()).map_err(|e| PasswdError::Usage(e.to_string()))?;
        let verb = if doc.set(&args.user, &hash) {
            "changed the password of"
        } else {
            "added"
        };
        format!("{verb} user `{}` in {}", args.user, path.display())
    };
    write_atomically(&path, doc.render().as_bytes(), existing.is_some())?;
    Ok(done)
}

/// From -b, standard input, or the terminal (asked twice, not echoed).
fn read_password(args: &PasswdArgs) -> Result<String, PasswdError> {
    if let Some(password) = &args.password {
        return Ok(password.clone());
    }
    let stdin = io::stdin();
    if args.password_stdin {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(io_at(Path::new("standard input")))?;
        return Ok(strip_newline(line));
    }
    if !stdin.is_terminal() {
        return Err(PasswdError::Usage(
            "standard input is not a terminal: use --password-stdin or -b".into(),
        ));
    }
    let first = prompt("Password: ")?;
    let second = prompt("Reenter password: ")?;
    if first != second {
        return Err(PasswdError::Usage("the passwords do not match".into()));
    }
    Ok(first)
}

fn strip_newline(mut line: String) -> String {
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    line
}

/// Echo off on the terminal (with `stty`, so no terminal library is needed) while a line
/// is read; back on when dropped, also on an error.
struct NoEcho(bool);

impl NoEcho {
    fn new() -> NoEcho {
        NoEcho(stty("-echo"))
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if self.0 {
            stty("echo");
        }
    }
}

fn stty(arg: &str) -> bool {
    Command::new("stty")
        .arg(arg)
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn prompt(text: &str) -> Result<String, PasswdError> {
    let mut err = io::stderr();
    let _ = write!(err, "{text}");
    let _ = err.flush();
    let hidden = NoEcho::new();
    let mut line = String::new();
    let read = io::stdin().lock().read_line(&mut line);
    drop(hidden);
    let _ = writeln!(err);
    read.map_err(io_at(Path::new("the terminal")))?;
    Ok(strip_newline(line))
}

/// Write `bytes` to `path` through a temporary file in the same folder and a rename.
fn write_atomically(path: &Path, bytes: &[u8], existed: bool) -> Result<(), PasswdError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "passwd".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(io_at(&tmp))?;
        #[cfg(unix)]
        if existed {
            keep_mode_and_owner(path, &tmp)?;
        }
        #[cfg(not(unix))]
        let _ = existed;
        file.write_all(bytes).map_err(io_at(&tmp))?;
        file.sync_all().map_err(io_at(&tmp))?;
        fs::rename(&tmp, path).map_err(io_at(path))?;
        // The rename itself reaches the disk with the folder (best effort).
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The existing file's permission bits and, when allowed (root), its owner.
#[cfg(unix)]
fn keep_mode_and_owner(path: &Path, tmp: &Path) -> Result<(), PasswdError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(path) else {
        return Ok(());
    };
    fs::set_permissions(tmp, meta.permissions()).map_err(io_at(tmp))?;
    let unchanged = fs::metadata(tmp).is_ok_and(|t| t.uid() == meta.uid() && t.gid() == meta.gid());
    if !unchanged {
        if let Err(e) = std::os::unix::fs::chown(tmp, Some(meta.uid()), Some(meta.gid())) {
            eprintln!(
                "gatehouse passwd: warning: {} will be owned by the current user, not uid {} ({e})",
                path.display(),
                meta.uid()
            );
        }
    }
    Ok(())
}
