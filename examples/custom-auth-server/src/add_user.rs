//! The `add-user` subcommand: hash a password read from stdin and write the user into the
//! users file, replacing any user of that name (password, attributes and lifetime alike:
//! the command line states the whole user).
//!
//! The file is rewritten atomically, so a running server picks up the change with its next
//! request. Rewriting drops comments from a hand-written YAML file. Two `add-user` runs on
//! one file at the same moment can lose one of the changes (there is no lock). Neither the
//! password nor its hash is ever printed.

use std::io::{self, BufRead, IsTerminal, Write};

use crate::cli::AddUserArgs;
use crate::password::{self, HashError};
use crate::users::{UserEntry, UsersError, UsersFile};

#[derive(Debug, thiserror::Error)]
pub enum AddUserError {
    #[error("cannot read the password from stdin: {0}")]
    Stdin(io::Error),
    #[error("the password is empty (it is read from the first line of stdin)")]
    EmptyPassword,
    #[error("the user name is empty")]
    EmptyName,
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Users(#[from] UsersError),
}

/// Whether the user was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Replaced,
}

/// Reads the password (the first line of stdin, without its line ending; prompting on
/// stderr when stdin is a terminal and `--password-stdin` is absent) and updates the file.
pub fn run(args: &AddUserArgs) -> Result<Change, AddUserError> {
    let stdin = io::stdin();
    if !args.password_stdin && stdin.is_terminal() {
        eprint!("Password for {} (it is echoed): ", args.name);
        let _ = io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(AddUserError::Stdin)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    add_user(args, password.as_bytes())
}

/// Writes the user `args.name` with `password` into `args.users`.
pub fn add_user(args: &AddUserArgs, password: &[u8]) -> Result<Change, AddUserError> {
    if args.name.is_empty() {
        return Err(AddUserError::EmptyName);
    }
    if password.is_empty() {
        return Err(AddUserError::EmptyPassword);
    }
    let mut file = match UsersFile::read(&args.users) {
        Ok(file) => file,
        Err(UsersError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            UsersFile::default()
        }
        Err(e) => return Err(e.into()),
    };
    let entry = UserEntry {
        password_hash: password::hash(password)?,
        attributes: args.attributes.iter().cloned().collect(),
        credential_lifetime: args.lifetime.clone(),
    };
    let change = match file.users.insert(args.name.clone(), entry) {
        None => Change::Added,
        Some(_) => Change::Replaced,
    };
    // Never write a file the server would refuse.
    file.compile().map_err(|problems| UsersError::Invalid {
        path: args.users.clone(),
        problems,
    })?;
    file.write(&args.users)?;
    Ok(change)
}
