//! Client side of the control socket, used by `scrubctl` and by anything scripting the daemon.

use crate::protocol::{Command, ErrorCode, Request, Response, PROTOCOL_VERSION};
use serde::de::DeserializeOwned;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    /// Nothing to talk to: the daemon is not running, or the path or permissions are wrong.
    #[error("cannot connect to {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("control socket I/O: {0}")]
    Io(#[from] io::Error),
    /// The daemon answered something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The daemon understood and said no.
    #[error("{}: {message}", code_name(*code))]
    Daemon { code: ErrorCode, message: String },
}

/// The wire name of an error code ("bad_request", ...).
pub fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{code:?}"))
}

pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Client {
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        let writer = stream.try_clone()?;
        Ok(Client {
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
        })
    }

    /// Bound how long one call may wait on the daemon (`None`: forever, the default).
    pub fn set_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.writer.set_write_timeout(t)?;
        self.writer.set_read_timeout(t)
    }

    /// Send one command and wait for its reply's `data` (`null` if the daemon sent none).
    pub fn call(&mut self, cmd: Command) -> Result<serde_json::Value, ClientError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let req = Request {
            v: PROTOCOL_VERSION,
            id: Some(id),
            cmd,
        };
        let mut line =
            serde_json::to_vec(&req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        if let Err(e) = self.writer.write_all(&line) {
            // A refused peer gets its one error line and the close before it writes anything;
            // that line says why, which beats "broken pipe".
            return match self.read_response() {
                Ok(resp) if !resp.ok && resp.error.is_some() => {
                    let e = resp.error.expect("checked");
                    Err(ClientError::Daemon {
                        code: e.code,
                        message: e.message,
                    })
                }
                _ => Err(e.into()),
            };
        }
        let resp = self.read_response()?;
        if resp.v != PROTOCOL_VERSION {
            return Err(ClientError::Protocol(format!(
                "daemon answered with protocol version {}, expected {PROTOCOL_VERSION}",
                resp.v
            )));
        }
        // Refusals (permissions, too many clients, too large) are sent before reading a
        // request, so they carry no id; surface them as the daemon error they are.
        let unsolicited_refusal = resp.id.is_none() && !resp.ok;
        if resp.id != Some(id) && !unsolicited_refusal {
            return Err(ClientError::Protocol(format!(
                "reply id {:?} does not match request id {id}",
                resp.id
            )));
        }
        if resp.ok {
            Ok(resp.data.unwrap_or(serde_json::Value::Null))
        } else {
            let e = resp.error.ok_or_else(|| {
                ClientError::Protocol("error reply without an `error` body".into())
            })?;
            Err(ClientError::Daemon {
                code: e.code,
                message: e.message,
            })
        }
    }

    /// `call`, decoding `data` into the reply type of the command.
    pub fn call_as<T: DeserializeOwned>(&mut self, cmd: Command) -> Result<T, ClientError> {
        let v = self.call(cmd)?;
        serde_json::from_value(v)
            .map_err(|e| ClientError::Protocol(format!("unexpected reply data: {e}")))
    }

    /// Responses have no size limit (a `metrics` or `hgrm` reply can be large).
    fn read_response(&mut self) -> Result<Response, ClientError> {
        let mut line = Vec::new();
        let n = self.reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(ClientError::Protocol(
                "daemon closed the connection without replying".into(),
            ));
        }
        serde_json::from_slice(&line)
            .map_err(|e| ClientError::Protocol(format!("reply is not a valid response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_wire_names() {
        assert_eq!(code_name(ErrorCode::BadRequest), "bad_request");
        assert_eq!(code_name(ErrorCode::TooLarge), "too_large");
    }

    #[test]
    fn connect_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nothing.sock");
        match Client::connect(&p) {
            Err(e @ ClientError::Connect { .. }) => {
                assert!(e.to_string().contains(&p.display().to_string()))
            }
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("connected to nothing"),
        }
    }
}
