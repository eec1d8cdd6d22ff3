//! scrubd's own commands on DPDK's telemetry socket, so `dpdk-telemetry.py` (and any client of
//! `<runtime dir>/dpdk_telemetry.v2`) shows scrubd's state next to DPDK's `/ethdev/stats`.
//!
//! DPDK 22.11 calls a command's handler with no user data, so every command goes through one
//! `extern "C"` dispatcher that looks the command name up in a process-global registry. The
//! handler runs on a DPDK client thread (one per connected client, possibly several at once),
//! never on a worker lcore: providers must be `Send + Sync` and may take locks, but should be
//! quick, since a slow provider only stalls that client.
//!
//! DPDK's data model is narrower than [`TelemetryValue`]; the mapping (all checked in the unit
//! tests below) is:
//! - Dict keys keep `[A-Za-z0-9_/]`; any other character becomes `_`, an empty key becomes
//!   `_`, and keys are cut to [`MAX_NAME_LEN`] bytes (DPDK rejects other characters and would
//!   cut mid-character).
//! - String values inside dicts and lists are cut to [`MAX_NAME_LEN`] bytes at a character
//!   boundary; a top-level string to [`MAX_SINGLE_STRING_LEN`]. NUL bytes are dropped and
//!   control characters become spaces.
//! - `I64` that fits in 32 bits is sent as an int, a larger non-negative one as u64, a larger
//!   negative one as its decimal string (22.11 has only 32-bit signed ints).
//! - A dict with more than [`MAX_DICT_ENTRIES`] entries keeps the first `MAX_DICT_ENTRIES - 1`
//!   and ends with `"_truncated": <number dropped>`; a list keeps its first
//!   [`MAX_ARRAY_ENTRIES`] elements.
//! - DPDK arrays hold one type. A list of numbers becomes a u64 array when none is negative,
//!   else an int array when all fit, else a string array; a list of strings a string array; a
//!   list of dicts/lists a dict keyed `"0"`, `"1"`, ... (22.11 refuses dicts in arrays, and
//!   arrays of containers inside dicts); any other mix a string array of each element's
//!   compact JSON text.
//! - A top-level number is sent as its decimal string (22.11 has no bare scalar reply).
//! - Nesting deeper than [`MAX_DEPTH`] is sent as the compact JSON text of the rest.
//! - DPDK drops whatever does not fit its 16 KiB reply buffer; the reply stays valid JSON.

use crate::eal::Eal;
use crate::error::{strerror, DpdkError};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use dpdk_sys::rte_tel_data;

/// A value a provider returns; converted to DPDK's `rte_tel_data` as the module docs describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TelemetryValue {
    U64(u64),
    I64(i64),
    Str(String),
    /// Entries in the order they are to appear. Duplicate keys are passed on as they are.
    Dict(Vec<(String, TelemetryValue)>),
    List(Vec<TelemetryValue>),
}

impl TelemetryValue {
    /// A dict from `(key, value)` pairs, for terse providers.
    pub fn dict<K: Into<String>, I: IntoIterator<Item = (K, TelemetryValue)>>(entries: I) -> Self {
        TelemetryValue::Dict(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl From<u64> for TelemetryValue {
    fn from(v: u64) -> Self {
        TelemetryValue::U64(v)
    }
}
impl From<u32> for TelemetryValue {
    fn from(v: u32) -> Self {
        TelemetryValue::U64(v.into())
    }
}
impl From<i64> for TelemetryValue {
    fn from(v: i64) -> Self {
        TelemetryValue::I64(v)
    }
}
impl From<&str> for TelemetryValue {
    fn from(v: &str) -> Self {
        TelemetryValue::Str(v.to_string())
    }
}
impl From<String> for TelemetryValue {
    fn from(v: String) -> Self {
        TelemetryValue::Str(v)
    }
}

/// What a command calls to build its reply. The argument is the text after the first `,` of
/// the request (`/scrubd/port,1` gives `Some("1")`), `None` when there is none.
pub type Provider = Arc<dyn Fn(Option<&str>) -> TelemetryValue + Send + Sync>;

/// Longest command name DPDK accepts (its buffer is 56 bytes with the NUL).
pub const MAX_COMMAND_LEN: usize = 55;
/// Longest help text, dict key and in-dict string value (`RTE_TEL_MAX_STRING_LEN` less the NUL).
pub const MAX_NAME_LEN: usize = dpdk_sys::RTE_TEL_MAX_STRING_LEN as usize - 1;
/// Longest top-level string reply.
pub const MAX_SINGLE_STRING_LEN: usize = dpdk_sys::RTE_TEL_MAX_SINGLE_STRING_LEN as usize - 1;
pub const MAX_DICT_ENTRIES: usize = dpdk_sys::RTE_TEL_MAX_DICT_ENTRIES as usize;
pub const MAX_ARRAY_ENTRIES: usize = dpdk_sys::RTE_TEL_MAX_ARRAY_ENTRIES as usize;
/// Deepest container nesting sent as containers; DPDK renders each level into a 16 KiB stack
/// buffer of the client thread, so unbounded depth would be a stack hazard.
pub const MAX_DEPTH: usize = 8;
/// Key that replaces the entries cut from an over-long dict.
pub const TRUNCATED_KEY: &str = "_truncated";

fn registry() -> &'static Mutex<HashMap<String, Provider>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Provider>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Register `cmd` (e.g. `/scrubd/stats`) with `help` (shown by `/help,<cmd>`).
///
/// Command names must start with `/`, be at most [`MAX_COMMAND_LEN`] bytes and use only
/// `[A-Za-z0-9_/]` (a `,` would split the request, and DPDK's own names follow this rule).
/// DPDK 22.11 cannot unregister a command, so a name can be registered once per process; keep
/// changing state behind the provider (an `Arc` it captures) rather than re-registering.
/// Telemetry must be enabled in EAL (it is unless `--no-telemetry` is given); the socket is
/// at [`socket_path`].
pub fn register(_eal: &Eal, cmd: &str, help: &str, provider: Provider) -> Result<(), DpdkError> {
    let bad = |reason: String| DpdkError::TelemetryCommand {
        cmd: cmd.to_string(),
        reason,
    };
    validate_command(cmd).map_err(bad)?;
    if help.len() > MAX_NAME_LEN {
        return Err(bad(format!(
            "help text is {} bytes; DPDK allows at most {MAX_NAME_LEN}",
            help.len()
        )));
    }
    let c_help = CString::new(help).map_err(|_| bad("help text contains a NUL byte".into()))?;
    let c_cmd = CString::new(cmd).map_err(|_| bad("contains a NUL byte".into()))?;
    // Held across the DPDK call so a request arriving at once never misses its provider. The
    // dispatcher takes this lock without holding any DPDK lock, so there is no lock cycle.
    let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
    if map.contains_key(cmd) {
        return Err(bad(
            "already registered (DPDK cannot replace or remove a command)".into(),
        ));
    }
    // SAFETY: both strings are valid NUL-terminated C strings for the call (DPDK copies them);
    // `dispatch` is a plain function that lives for the whole process.
    let rc = unsafe {
        dpdk_sys::rte_telemetry_register_cmd(c_cmd.as_ptr(), Some(dispatch), c_help.as_ptr())
    };
    if rc < 0 {
        return Err(bad(format!("rte_telemetry_register_cmd: {}", strerror(rc))));
    }
    map.insert(cmd.to_string(), provider);
    Ok(())
}

/// Where DPDK listens for telemetry clients: `<EAL runtime dir>/dpdk_telemetry.v2`, e.g.
/// `/var/run/dpdk/<file-prefix>/dpdk_telemetry.v2` for root. If another live process of the
/// same prefix holds that path, DPDK binds `...v2:1` (and so on) instead.
pub fn socket_path(eal: &Eal) -> PathBuf {
    crate::pdump::runtime_dir(eal).join("dpdk_telemetry.v2")
}

fn validate_command(cmd: &str) -> Result<(), String> {
    if !cmd.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if cmd.len() < 2 {
        return Err("'/' alone is DPDK's command list".into());
    }
    if cmd.len() > MAX_COMMAND_LEN {
        return Err(format!(
            "is {} bytes; DPDK allows at most {MAX_COMMAND_LEN}",
            cmd.len()
        ));
    }
    if let Some(c) = cmd.chars().find(|c| !allowed_name_char(*c)) {
        return Err(format!("contains {c:?}; use only A-Z a-z 0-9 _ /"));
    }
    Ok(())
}

fn allowed_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '/'
}

/// The one handler DPDK knows; finds the provider by command name.
unsafe extern "C" fn dispatch(
    cmd: *const c_char,
    params: *const c_char,
    d: *mut rte_tel_data,
) -> c_int {
    // A panic must not unwind into C: it becomes a `null` reply (DPDK's answer to an error).
    catch_unwind(AssertUnwindSafe(|| {
        if cmd.is_null() || d.is_null() {
            return -1;
        }
        // SAFETY: DPDK passes the NUL-terminated command it matched, valid for this call.
        let cmd = unsafe { CStr::from_ptr(cmd) }.to_string_lossy();
        let provider = {
            let map = registry().lock().unwrap_or_else(|p| p.into_inner());
            match map.get(cmd.as_ref()) {
                Some(p) => Arc::clone(p),
                None => return -1,
            }
        };
        let params = if params.is_null() {
            None
        } else {
            // SAFETY: DPDK passes the rest of the request after the first ',', NUL-terminated
            // and valid for this call.
            Some(unsafe { CStr::from_ptr(params) }.to_string_lossy())
        };
        let value = provider(params.as_deref().filter(|p| !p.is_empty()));
        let doc = shape_top(&value);
        // SAFETY: `d` is the uninitialised reply DPDK owns for this call; emit starts it
        // (dict, array or string) before anything else, as DPDK requires before returning 0.
        unsafe { emit(d, &doc) }
    }))
    .unwrap_or(-1)
}

// ---- Shaping: TelemetryValue -> a tree that maps 1:1 onto rte_tel_data calls (pure Rust) ----

/// What one `rte_tel_data` holds.
#[derive(Debug, PartialEq)]
enum Doc {
    Dict(Vec<(CString, Entry)>),
    Array(Array),
    /// Top level only.
    Str(CString),
}

#[derive(Debug, PartialEq)]
enum Entry {
    Str(CString),
    Int(i32),
    U64(u64),
    /// A dict, or an array that is not itself of containers.
    Container(Doc),
}

#[derive(Debug, PartialEq)]
enum Array {
    Str(Vec<CString>),
    Int(Vec<i32>),
    U64(Vec<u64>),
}

fn shape_top(v: &TelemetryValue) -> Doc {
    match v {
        TelemetryValue::Dict(entries) => Doc::Dict(shape_dict(entries, 1)),
        TelemetryValue::List(items) => shape_list(items, 1),
        TelemetryValue::Str(s) => Doc::Str(clean_text(s, MAX_SINGLE_STRING_LEN)),
        TelemetryValue::U64(_) | TelemetryValue::I64(_) => {
            Doc::Str(clean_text(&compact_text(v, 64), MAX_SINGLE_STRING_LEN))
        }
    }
}

fn shape_dict(entries: &[(String, TelemetryValue)], depth: usize) -> Vec<(CString, Entry)> {
    let keep = if entries.len() > MAX_DICT_ENTRIES {
        MAX_DICT_ENTRIES - 1
    } else {
        entries.len()
    };
    let mut out: Vec<(CString, Entry)> = entries
        .iter()
        .take(keep)
        .map(|(k, v)| (key_name(k), shape_entry(v, depth)))
        .collect();
    if keep < entries.len() {
        let dropped = (entries.len() - keep) as u64;
        out.push((key_name(TRUNCATED_KEY), Entry::U64(dropped)));
    }
    out
}

fn shape_entry(v: &TelemetryValue, depth: usize) -> Entry {
    match v {
        TelemetryValue::U64(n) => Entry::U64(*n),
        TelemetryValue::I64(n) => match i32::try_from(*n) {
            Ok(small) => Entry::Int(small),
            Err(_) => match u64::try_from(*n) {
                Ok(big) => Entry::U64(big),
                Err(_) => Entry::Str(clean_text(&n.to_string(), MAX_NAME_LEN)),
            },
        },
        TelemetryValue::Str(s) => Entry::Str(clean_text(s, MAX_NAME_LEN)),
        TelemetryValue::Dict(_) | TelemetryValue::List(_) if depth >= MAX_DEPTH => {
            Entry::Str(clean_text(&compact_text(v, MAX_NAME_LEN), MAX_NAME_LEN))
        }
        TelemetryValue::Dict(entries) => {
            Entry::Container(Doc::Dict(shape_dict(entries, depth + 1)))
        }
        TelemetryValue::List(items) => Entry::Container(shape_list(items, depth + 1)),
    }
}

fn is_container(v: &TelemetryValue) -> bool {
    matches!(v, TelemetryValue::Dict(_) | TelemetryValue::List(_))
}

fn as_i128(v: &TelemetryValue) -> Option<i128> {
    match v {
        TelemetryValue::U64(n) => Some((*n).into()),
        TelemetryValue::I64(n) => Some((*n).into()),
        _ => None,
    }
}

/// A list as one DPDK array, or as an index-keyed dict when it holds containers.
fn shape_list(items: &[TelemetryValue], depth: usize) -> Doc {
    let items = &items[..items.len().min(MAX_ARRAY_ENTRIES)];
    let numbers: Option<Vec<i128>> = items.iter().map(as_i128).collect();
    if let Some(nums) = numbers {
        if nums.iter().all(|n| *n >= 0) {
            return Doc::Array(Array::U64(
                nums.iter()
                    .map(|n| u64::try_from(*n).unwrap_or(u64::MAX))
                    .collect(),
            ));
        }
        let ints: Option<Vec<i32>> = nums.iter().map(|n| i32::try_from(*n).ok()).collect();
        if let Some(ints) = ints {
            return Doc::Array(Array::Int(ints));
        }
        return Doc::Array(Array::Str(
            nums.iter()
                .map(|n| clean_text(&n.to_string(), MAX_NAME_LEN))
                .collect(),
        ));
    }
    if items.iter().all(|v| matches!(v, TelemetryValue::Str(_))) {
        return Doc::Array(Array::Str(
            items
                .iter()
                .map(|v| match v {
                    TelemetryValue::Str(s) => clean_text(s, MAX_NAME_LEN),
                    other => clean_text(&compact_text(other, MAX_NAME_LEN), MAX_NAME_LEN),
                })
                .collect(),
        ));
    }
    if items.iter().all(is_container) {
        let indexed: Vec<(String, TelemetryValue)> = items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v.clone()))
            .collect();
        return Doc::Dict(shape_dict(&indexed, depth));
    }
    Doc::Array(Array::Str(
        items
            .iter()
            .map(|v| match v {
                TelemetryValue::Str(s) => clean_text(s, MAX_NAME_LEN),
                other => clean_text(&compact_text(other, MAX_NAME_LEN), MAX_NAME_LEN),
            })
            .collect(),
    ))
}

/// A dict key DPDK accepts: `[A-Za-z0-9_/]`, 1 to MAX_NAME_LEN bytes.
fn key_name(k: &str) -> CString {
    let mut s: String = k
        .chars()
        .map(|c| if allowed_name_char(c) { c } else { '_' })
        .take(MAX_NAME_LEN)
        .collect();
    if s.is_empty() {
        s.push('_');
    }
    // Only ASCII remains, so there is no NUL and the conversion cannot fail.
    CString::new(s).unwrap_or_default()
}

/// `s` without NULs, control characters as spaces, at most `max` bytes cut at a char boundary.
fn clean_text(s: &str, max: usize) -> CString {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        if c == '\0' {
            continue;
        }
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    // NULs were skipped above, so the conversion cannot fail.
    CString::new(out).unwrap_or_default()
}

/// Compact JSON-like text of `v`, stopping once it passes `limit` bytes (the caller cuts).
fn compact_text(v: &TelemetryValue, limit: usize) -> String {
    let mut s = String::new();
    write_compact(&mut s, v, limit);
    s
}

fn write_compact(s: &mut String, v: &TelemetryValue, limit: usize) {
    if s.len() > limit {
        return;
    }
    match v {
        TelemetryValue::U64(n) => {
            let _ = write!(s, "{n}");
        }
        TelemetryValue::I64(n) => {
            let _ = write!(s, "{n}");
        }
        TelemetryValue::Str(t) => write_quoted(s, t),
        TelemetryValue::Dict(entries) => {
            s.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if s.len() > limit {
                    return;
                }
                if i > 0 {
                    s.push(',');
                }
                write_quoted(s, k);
                s.push(':');
                write_compact(s, v, limit);
            }
            s.push('}');
        }
        TelemetryValue::List(items) => {
            s.push('[');
            for (i, v) in items.iter().enumerate() {
                if s.len() > limit {
                    return;
                }
                if i > 0 {
                    s.push(',');
                }
                write_compact(s, v, limit);
            }
            s.push(']');
        }
    }
}

fn write_quoted(s: &mut String, t: &str) {
    s.push('"');
    for c in t.chars() {
        if c == '"' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
}

// ---- Emission: the shaped tree into DPDK's rte_tel_data ----

/// Fill `d` from `doc`. Entries DPDK refuses, or whose container cannot be allocated, are
/// skipped so the rest of the reply still goes out.
///
/// # Safety
/// `d` must point to an `rte_tel_data` that this call may (re)start and fill.
unsafe fn emit(d: *mut rte_tel_data, doc: &Doc) -> c_int {
    match doc {
        Doc::Str(s) => {
            // SAFETY: d is valid per the contract; s is NUL-terminated.
            unsafe { dpdk_sys::rte_tel_data_string(d, s.as_ptr()) }
        }
        Doc::Dict(entries) => {
            // SAFETY: d is valid per the contract.
            let rc = unsafe { dpdk_sys::rte_tel_data_start_dict(d) };
            if rc < 0 {
                return rc;
            }
            for (k, v) in entries {
                // SAFETY: d was started as a dict; keys and strings are NUL-terminated, and
                // DPDK copies them.
                unsafe {
                    match v {
                        Entry::Str(s) => {
                            dpdk_sys::rte_tel_data_add_dict_string(d, k.as_ptr(), s.as_ptr());
                        }
                        Entry::Int(n) => {
                            dpdk_sys::rte_tel_data_add_dict_int(d, k.as_ptr(), *n);
                        }
                        Entry::U64(n) => {
                            dpdk_sys::rte_tel_data_add_dict_u64(d, k.as_ptr(), *n);
                        }
                        Entry::Container(inner) => {
                            if let Some(c) = emit_container(inner) {
                                // keep = 0: DPDK frees the container after writing the reply.
                                if dpdk_sys::rte_tel_data_add_dict_container(d, k.as_ptr(), c, 0)
                                    < 0
                                {
                                    dpdk_sys::rte_tel_data_free(c);
                                }
                            }
                        }
                    }
                }
            }
            0
        }
        Doc::Array(arr) => {
            let kind = match arr {
                Array::Str(_) => dpdk_sys::rte_tel_value_type_RTE_TEL_STRING_VAL,
                Array::Int(_) => dpdk_sys::rte_tel_value_type_RTE_TEL_INT_VAL,
                Array::U64(_) => dpdk_sys::rte_tel_value_type_RTE_TEL_U64_VAL,
            };
            // SAFETY: d is valid per the contract.
            let rc = unsafe { dpdk_sys::rte_tel_data_start_array(d, kind) };
            if rc < 0 {
                return rc;
            }
            // SAFETY: d was started as an array of the matching type; strings are
            // NUL-terminated and copied by DPDK.
            unsafe {
                match arr {
                    Array::Str(v) => {
                        for s in v {
                            dpdk_sys::rte_tel_data_add_array_string(d, s.as_ptr());
                        }
                    }
                    Array::Int(v) => {
                        for n in v {
                            dpdk_sys::rte_tel_data_add_array_int(d, *n);
                        }
                    }
                    Array::U64(v) => {
                        for n in v {
                            dpdk_sys::rte_tel_data_add_array_u64(d, *n);
                        }
                    }
                }
            }
            0
        }
    }
}

/// A freshly allocated `rte_tel_data` filled from `doc`, or `None` (nothing leaked) on failure.
fn emit_container(doc: &Doc) -> Option<*mut rte_tel_data> {
    // SAFETY: plain allocation; the result is checked for NULL.
    let c = unsafe { dpdk_sys::rte_tel_data_alloc() };
    if c.is_null() {
        return None;
    }
    // SAFETY: c is a fresh rte_tel_data we own.
    if unsafe { emit(c, doc) } < 0 {
        // SAFETY: c is ours and attached nowhere.
        unsafe { dpdk_sys::rte_tel_data_free(c) };
        return None;
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TelemetryValue as V;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn command_names_follow_dpdk_rules() {
        assert!(validate_command("/scrubd/stats").is_ok());
        assert!(validate_command("/scrubd/port_2").is_ok());
        assert!(validate_command("scrubd").is_err());
        assert!(validate_command("/").is_err());
        assert!(validate_command("/a,b").is_err());
        assert!(validate_command("/a-b").is_err());
        assert!(validate_command("/é").is_err());
        let longest = format!("/{}", "x".repeat(MAX_COMMAND_LEN - 1));
        assert!(validate_command(&longest).is_ok());
        assert!(validate_command(&format!("{longest}x")).is_err());
    }

    #[test]
    fn keys_are_sanitised_and_cut() {
        assert_eq!(key_name("rx_pkts"), c("rx_pkts"));
        assert_eq!(key_name("a-b.c d"), c("a_b_c_d"));
        assert_eq!(key_name("näh"), c("n_h"));
        assert_eq!(key_name(""), c("_"));
        let long = "k".repeat(300);
        assert_eq!(key_name(&long).as_bytes().len(), MAX_NAME_LEN);
    }

    #[test]
    fn strings_are_cut_at_char_boundaries_without_nul_or_controls() {
        assert_eq!(clean_text("a\0b\nc", 10), c("ab c"));
        // 'é' is two bytes: cutting at 3 bytes must not split it.
        assert_eq!(clean_text("aéé", 4), c("aé"));
        let long = "é".repeat(200);
        let cut = clean_text(&long, MAX_NAME_LEN);
        assert!(cut.as_bytes().len() <= MAX_NAME_LEN);
        assert!(cut.to_str().is_ok());
    }

    #[test]
    fn i64_maps_to_int_u64_or_string() {
        assert_eq!(shape_entry(&V::I64(-5), 1), Entry::Int(-5));
        assert_eq!(shape_entry(&V::I64(1 << 40), 1), Entry::U64(1 << 40));
        assert_eq!(
            shape_entry(&V::I64(-(1 << 40)), 1),
            Entry::Str(c(&(-(1i64 << 40)).to_string()))
        );
    }

    #[test]
    fn oversized_dict_keeps_first_entries_and_counts_the_rest() {
        let entries: Vec<(String, V)> = (0..300u64).map(|i| (format!("k{i}"), V::U64(i))).collect();
        let out = shape_dict(&entries, 1);
        assert_eq!(out.len(), MAX_DICT_ENTRIES);
        assert_eq!(out[0], (c("k0"), Entry::U64(0)));
        assert_eq!(out[MAX_DICT_ENTRIES - 2], (c("k254"), Entry::U64(254)));
        assert_eq!(
            out[MAX_DICT_ENTRIES - 1],
            (c(TRUNCATED_KEY), Entry::U64(300 - 255))
        );
        // Exactly at the limit nothing is cut.
        let exact: Vec<(String, V)> = entries[..MAX_DICT_ENTRIES].to_vec();
        assert_eq!(shape_dict(&exact, 1).len(), MAX_DICT_ENTRIES);
    }

    #[test]
    fn list_typing() {
        assert_eq!(
            shape_list(&[V::U64(1), V::I64(2)], 1),
            Doc::Array(Array::U64(vec![1, 2]))
        );
        assert_eq!(
            shape_list(&[V::U64(1), V::I64(-2)], 1),
            Doc::Array(Array::Int(vec![1, -2]))
        );
        assert_eq!(
            shape_list(&[V::U64(u64::MAX), V::I64(-2)], 1),
            Doc::Array(Array::Str(vec![c(&u64::MAX.to_string()), c("-2")]))
        );
        assert_eq!(
            shape_list(&[V::Str("a".into())], 1),
            Doc::Array(Array::Str(vec![c("a")]))
        );
        assert_eq!(shape_list(&[], 1), Doc::Array(Array::U64(vec![])));
        assert_eq!(
            shape_list(&[V::U64(1), V::Str("x\"y".into())], 1),
            Doc::Array(Array::Str(vec![c("1"), c("x\"y")]))
        );
        assert_eq!(
            shape_list(&[V::U64(1), V::List(vec![V::Str("q".into())])], 1),
            Doc::Array(Array::Str(vec![c("1"), c("[\"q\"]")]))
        );
        let long: Vec<V> = (0..600u64).map(V::U64).collect();
        match shape_list(&long, 1) {
            Doc::Array(Array::U64(v)) => assert_eq!(v.len(), MAX_ARRAY_ENTRIES),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn list_of_containers_is_an_indexed_dict() {
        let dicts = vec![V::dict([("a", V::U64(1))]), V::List(vec![V::U64(2)])];
        let expect = Doc::Dict(vec![
            (
                c("0"),
                Entry::Container(Doc::Dict(vec![(c("a"), Entry::U64(1))])),
            ),
            (c("1"), Entry::Container(Doc::Array(Array::U64(vec![2])))),
        ]);
        assert_eq!(shape_list(&dicts, 1), expect);
        assert_eq!(shape_entry(&V::List(dicts), 1), Entry::Container(expect));
    }

    #[test]
    fn top_level_scalars_become_strings() {
        assert_eq!(shape_top(&V::U64(42)), Doc::Str(c("42")));
        assert_eq!(shape_top(&V::I64(-42)), Doc::Str(c("-42")));
        assert_eq!(shape_top(&V::Str("hi".into())), Doc::Str(c("hi")));
    }

    #[test]
    fn deep_nesting_is_cut_to_text() {
        let mut v = V::U64(7);
        for _ in 0..(MAX_DEPTH + 3) {
            v = V::dict([("d", v)]);
        }
        // Walk down the shaped tree: containers down to MAX_DEPTH, then a string.
        let mut depth = 1;
        let mut doc = shape_top(&v);
        loop {
            let Doc::Dict(mut entries) = doc else {
                panic!("expected dict at depth {depth}")
            };
            let (_, e) = entries.remove(0);
            match e {
                Entry::Container(inner) => {
                    doc = inner;
                    depth += 1;
                }
                Entry::Str(s) => {
                    assert_eq!(depth, MAX_DEPTH);
                    assert!(s.to_str().unwrap().starts_with("{\"d\":"));
                    break;
                }
                other => panic!("unexpected {other:?} at depth {depth}"),
            }
        }
    }

    #[test]
    fn compact_text_escapes_and_stops_near_limit() {
        let v = V::dict([("k\"", V::List(vec![V::Str("a\\b".into()), V::I64(-1)]))]);
        assert_eq!(compact_text(&v, 1000), r#"{"k\"":["a\\b",-1]}"#);
        let big = V::List((0..10_000u64).map(V::U64).collect());
        assert!(compact_text(&big, 100).len() < 200);
    }
}
