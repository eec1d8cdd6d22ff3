//! `scrubctl bgp-bridge`: the program ExaBGP runs through its `process` API, between the BGP
//! daemon and scrubd's control socket.
//!
//! - **FlowSpec in.** ExaBGP writes every received UPDATE to our stdin as one JSON line
//!   (`encoder json; receive { parsed; update; }`). Announced `ipv4 flow`/`ipv6 flow` routes
//!   become `flowspec_announce` requests, withdrawn ones `flowspec_withdraw`, and a peer whose
//!   session goes down a `flowspec_flush` of its routes. The route's components are taken from
//!   ExaBGP's `string` form of the NLRI, which keeps multi-flag values (`=syn+ack`) and AND
//!   chains (`>=80&<=90`) that its per-component JSON lists split apart. The bridge remembers
//!   the routes it forwarded and sends them again whenever it reconnects to scrubd, so a
//!   restarted scrubd gets the peer's current policy without a BGP route refresh.
//! - **Health out.** Every `interval` it asks scrubd for `health` (with a timeout); while the
//!   answer is healthy the protected prefixes are announced (`announce route P next-hop self`
//!   on stdout, which ExaBGP sends to its peers), and as soon as it is not, or scrubd does not
//!   answer within the timeout, or its socket is gone, they are withdrawn. So a stopped or
//!   wedged box leaves the routers' ECMP set within `interval + timeout` plus BGP's own
//!   propagation (ExaBGP sends at once; no MRAI for withdrawals).

use crate::client::{Client, ClientError};
use crate::protocol::{Command, FlowspecRoute, HealthReport};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the bridge was told on its command line.
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    pub socket: PathBuf,
    /// Prefixes announced while scrubd is healthy.
    pub announce: Vec<String>,
    /// ExaBGP next-hop of the announcements ("self" or an address).
    pub next_hop: String,
    /// Between two health checks.
    pub interval: Duration,
    /// How long one health check may take before the box counts as unhealthy.
    pub timeout: Duration,
}

/// One line from ExaBGP, decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Announce {
        peer: String,
        route: FlowspecRoute,
    },
    Withdraw {
        peer: String,
        route: FlowspecRoute,
    },
    PeerDown {
        peer: String,
    },
    /// Anything else (unicast updates, keepalives, ExaBGP's `done` acknowledgments).
    Other,
}

/// Components of ExaBGP's NLRI text: `flow destination-ipv4 10.0.0.0/24 protocol [ =udp =tcp ]
/// destination-port [ >=80&<=90 ]` → {destination-ipv4: [10.0.0.0/24], protocol: [=udp, =tcp],
/// destination-port: [>=80&<=90]}. `next-hop` is not a component and is skipped.
pub fn flow_components(text: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut toks = text.split_whitespace().peekable();
    if toks.next() != Some("flow") {
        return Err(format!("not a flow route: {text}"));
    }
    let mut out = BTreeMap::new();
    while let Some(key) = toks.next() {
        let vals: Vec<String> = match toks.next() {
            Some("[") => {
                let mut v = Vec::new();
                loop {
                    match toks.next() {
                        Some("]") => break,
                        Some(t) => v.push(t.to_string()),
                        None => return Err(format!("unclosed `[` after {key}: {text}")),
                    }
                }
                v
            }
            Some(t) => vec![t.to_string()],
            None => return Err(format!("{key} without a value: {text}")),
        };
        if key == "next-hop" {
            continue;
        }
        if out.insert(key.to_string(), vals).is_some() {
            return Err(format!("{key} twice: {text}"));
        }
    }
    Ok(out)
}

fn route_of(nlri: &Value, communities: &[String]) -> Option<FlowspecRoute> {
    let text = nlri.get("string")?.as_str()?;
    let components = match flow_components(text) {
        Ok(c) => c,
        Err(e) => {
            // Sent on as one component scrubd will refuse and count, with the text as reason.
            log_line(&format!("unreadable flow route: {e}"));
            BTreeMap::from([("unparsed".to_string(), vec![text.to_string()])])
        }
    };
    Some(FlowspecRoute {
        components,
        communities: communities.to_vec(),
    })
}

/// Decodes one line ExaBGP wrote to the process. Several routes may come in one UPDATE.
pub fn decode(line: &str) -> Vec<Event> {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return vec![Event::Other];
    };
    let peer = v
        .pointer("/neighbor/address/peer")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match v.get("type").and_then(Value::as_str) {
        Some("state") => {
            let state = v.pointer("/neighbor/state").and_then(Value::as_str);
            if matches!(state, Some("down") | Some("shutdown")) {
                return vec![Event::PeerDown { peer }];
            }
            vec![Event::Other]
        }
        Some("update") => {
            let Some(u) = v.pointer("/neighbor/message/update") else {
                return vec![Event::Other];
            };
            let communities: Vec<String> = u
                .pointer("/attribute/extended-community")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.get("string").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let mut out = Vec::new();
            if let Some(fams) = u.get("withdraw").and_then(Value::as_object) {
                for (fam, routes) in fams {
                    if !fam.contains("flow") {
                        continue;
                    }
                    for r in routes.as_array().into_iter().flatten() {
                        if let Some(route) = route_of(r, &[]) {
                            out.push(Event::Withdraw {
                                peer: peer.clone(),
                                route,
                            });
                        }
                    }
                }
            }
            if let Some(fams) = u.get("announce").and_then(Value::as_object) {
                for (fam, by_nexthop) in fams {
                    if !fam.contains("flow") {
                        continue;
                    }
                    // `ipv4 flow-vpn` carries a route distinguisher; its string shows `rd`,
                    // which scrubd refuses as a component it does not evaluate.
                    for routes in by_nexthop.as_object().into_iter().flat_map(|m| m.values()) {
                        for r in routes.as_array().into_iter().flatten() {
                            if let Some(route) = route_of(r, &communities) {
                                out.push(Event::Announce {
                                    peer: peer.clone(),
                                    route,
                                });
                            }
                        }
                    }
                }
            }
            if out.is_empty() {
                out.push(Event::Other);
            }
            out
        }
        _ => vec![Event::Other],
    }
}

/// ExaBGP keeps a process's stderr in its log.
fn log_line(msg: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "scrubctl bgp-bridge: {msg}");
}

type Routes = BTreeMap<(String, String), FlowspecRoute>;

/// A connection to scrubd made on demand and dropped on the first error.
struct Link {
    socket: PathBuf,
    timeout: Duration,
    client: Option<Client>,
}

impl Link {
    /// Calls `cmd`; `Ok(true)` in the second place when this call opened a new connection.
    fn call(&mut self, cmd: Command) -> Result<(Value, bool), ClientError> {
        let fresh = self.client.is_none();
        if fresh {
            let mut c = Client::connect(&self.socket)?;
            c.set_timeout(Some(self.timeout))?;
            self.client = Some(c);
        }
        let r = self.client.as_mut().map(|c| c.call(cmd));
        match r {
            Some(Ok(v)) => Ok((v, fresh)),
            Some(Err(e)) => {
                // A daemon's refusal leaves the connection usable; anything else does not.
                if !matches!(e, ClientError::Daemon { .. }) {
                    self.client = None;
                }
                Err(e)
            }
            None => unreachable!("connected above"),
        }
    }
}

/// Sends one FlowSpec event to scrubd and records it in `routes` (for replay); sets `resend`
/// when scrubd could not be reached.
fn forward(link: &mut Link, routes: &Mutex<Routes>, resend: &AtomicBool, ev: Event) {
    let cmd = {
        let mut r = routes.lock().unwrap_or_else(|e| e.into_inner());
        match ev {
            Event::Announce { peer, route } => {
                r.insert((peer.clone(), route.text()), route.clone());
                Command::FlowspecAnnounce { peer, route }
            }
            Event::Withdraw { peer, route } => {
                r.remove(&(peer.clone(), route.text()));
                Command::FlowspecWithdraw { peer, route }
            }
            Event::PeerDown { peer } => {
                r.retain(|(p, _), _| *p != peer);
                Command::FlowspecFlush { peer }
            }
            Event::Other => return,
        }
    };
    match link.call(cmd) {
        Ok(_) => {}
        // Refused routes are counted and listed by scrubd; say so in ExaBGP's log too.
        Err(ClientError::Daemon { message, .. }) => log_line(&message),
        // scrubd is down: the route is kept and sent when it is back.
        Err(e) => {
            resend.store(true, Ordering::Release);
            log_line(&format!("scrubd unreachable, will resend: {e}"));
        }
    }
}

/// Runs the bridge until stdin closes (ExaBGP stopped). `out` gets ExaBGP's commands.
pub fn run(cfg: &BridgeConfig, input: impl BufRead + Send + 'static, out: &mut dyn Write) {
    let routes = Arc::new(Mutex::new(Routes::new()));
    let done = Arc::new(AtomicBool::new(false));
    let resend = Arc::new(AtomicBool::new(false));
    let reader = {
        let (routes, done, cfg) = (Arc::clone(&routes), Arc::clone(&done), cfg.clone());
        let resend = Arc::clone(&resend);
        std::thread::spawn(move || {
            let mut link = Link {
                socket: cfg.socket.clone(),
                timeout: Duration::from_secs(5),
                client: None,
            };
            for line in input.lines() {
                let Ok(line) = line else { break };
                for ev in decode(&line) {
                    forward(&mut link, &routes, &resend, ev);
                }
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut link = Link {
        socket: cfg.socket.clone(),
        timeout: cfg.timeout,
        client: None,
    };
    // Unknown at start: ExaBGP may still hold our announcement from a previous bridge process
    // (it restarts a process that died), so the first answer is always written out, a
    // withdrawal included.
    let mut announced: Option<bool> = None;
    let mut last_reason = String::new();
    loop {
        let started = Instant::now();
        let (healthy, reason) = match link.call(Command::Health) {
            Ok((v, fresh)) => {
                if fresh || resend.swap(false, Ordering::AcqRel) {
                    replay(&mut link, &routes);
                }
                match serde_json::from_value::<HealthReport>(v) {
                    Ok(h) => (h.healthy, h.reasons.join("; ")),
                    Err(e) => (false, format!("unreadable health reply: {e}")),
                }
            }
            Err(e) => (false, format!("no health answer: {e}")),
        };
        if announced != Some(healthy) {
            let verb = if healthy { "announce" } else { "withdraw" };
            for p in &cfg.announce {
                let _ = writeln!(out, "{verb} route {p} next-hop {}", cfg.next_hop);
            }
            let _ = out.flush();
            log_line(&if healthy {
                format!("scrubd healthy: announced {}", cfg.announce.join(", "))
            } else {
                format!(
                    "scrubd unhealthy ({reason}): withdrew {}",
                    cfg.announce.join(", ")
                )
            });
            announced = Some(healthy);
        } else if !healthy && reason != last_reason {
            log_line(&format!("scrubd still unhealthy: {reason}"));
        }
        last_reason = reason;
        if done.load(Ordering::Acquire) {
            break;
        }
        std::thread::sleep(cfg.interval.saturating_sub(started.elapsed()));
    }
    let _ = reader.join();
}

/// After (re)connecting: scrubd may have restarted with an empty table; send every route the
/// peers have announced and not withdrawn (announcing an active route again changes nothing).
fn replay(link: &mut Link, routes: &Mutex<Routes>) {
    let all: Vec<((String, String), FlowspecRoute)> = routes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for ((peer, _), route) in all {
        if let Err(ClientError::Daemon { message, .. }) =
            link.call(Command::FlowspecAnnounce { peer, route })
        {
            log_line(&message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as ExaBGP 4.2.21 wrote them to the process in a session with gobgpd 3.10.
    const ANNOUNCE: &str = r#"{ "exabgp": "4.0.1", "time": 1795773113.016986, "host" : "vm", "pid" : 21239, "ppid" : 1, "counter": 5, "type": "update", "neighbor": { "address": { "local": "192.0.2.2", "peer": "192.0.2.1" }, "asn": { "local": 65002, "peer": 65001 } , "direction": "receive", "message": { "update": { "attribute": { "origin": "incomplete", "as-path": [ 65001 ], "confederation-path": [], "extended-community": [ { "value": 9225060887893856256, "string": "rate-limit:12500" } ] }, "announce": { "ipv4 flow": { "no-nexthop": [ { "destination-ipv4": [ "10.0.0.5/32" ], "protocol": [ "=tcp" ], "destination-port": [ ">=80&<=90" ], "tcp-flags": [ "=syn" ], "packet-length": [ ">1000" ], "fragment": [ "is-fragment" ], "string": "flow destination-ipv4 10.0.0.5/32 protocol =tcp destination-port [ >=80&<=90 ] tcp-flags =syn packet-length >1000 fragment is-fragment" } ] } } } } } }"#;
    const WITHDRAW: &str = r#"{ "exabgp": "4.0.1", "time": 1795773113.0558105, "host" : "vm", "pid" : 21239, "ppid" : 1, "counter": 9, "type": "update", "neighbor": { "address": { "local": "192.0.2.2", "peer": "192.0.2.1" }, "asn": { "local": 65002, "peer": 65001 } , "direction": "receive", "message": { "update": { "withdraw": { "ipv4 flow": [ { "destination-ipv4": [ "10.0.0.6/32" ], "string": "flow destination-ipv4 10.0.0.6/32" } ] } } } } }"#;
    const DOWN: &str = r#"{ "exabgp": "4.0.1", "time": 1.0, "host" : "vm", "pid" : 1, "ppid" : 1, "counter": 2, "type": "state", "neighbor": { "address": { "local": "192.0.2.2", "peer": "192.0.2.1" }, "asn": { "local": 65002, "peer": 65001 } , "state": "down", "reason": "peer reset" } }"#;

    #[test]
    fn decodes_announce_withdraw_and_down() {
        let ev = decode(ANNOUNCE);
        let [Event::Announce { peer, route }] = ev.as_slice() else {
            panic!("{ev:?}")
        };
        assert_eq!(peer, "192.0.2.1");
        assert_eq!(route.communities, vec!["rate-limit:12500".to_string()]);
        assert_eq!(route.components["destination-port"], vec![">=80&<=90"]);
        assert_eq!(route.components["tcp-flags"], vec!["=syn"]);
        assert_eq!(route.components.len(), 6);
        let ev = decode(WITHDRAW);
        let [Event::Withdraw { route, .. }] = ev.as_slice() else {
            panic!("{ev:?}")
        };
        assert_eq!(route.text(), "destination-ipv4 10.0.0.6/32");
        assert_eq!(
            decode(DOWN),
            vec![Event::PeerDown {
                peer: "192.0.2.1".into()
            }]
        );
        assert_eq!(decode("done"), vec![Event::Other]);
    }

    #[test]
    fn decodes_ipv6_flow_with_offsets() {
        // ExaBGP 4.2.21's line for gobgp's `-a ipv6-flowspec add match destination
        // 2001:db8:1::/48 source 2001:db8:2::/64 protocol ==udp destination-port ==53 then
        // rate-limit 1000`.
        let line = r#"{ "exabgp": "4.0.1", "time": 1795774645.8516107, "host" : "vm", "pid" : 7382, "ppid" : 7153, "counter": 3, "type": "update", "neighbor": { "address": { "local": "192.0.2.2", "peer": "192.0.2.1" }, "asn": { "local": 65002, "peer": 65001 } , "direction": "receive", "message": { "update": { "attribute": { "origin": "incomplete", "as-path": [ 65001 ], "confederation-path": [], "extended-community": [ { "value": 9225060887863885824, "string": "rate-limit:1000" } ] }, "announce": { "ipv6 flow": { "no-nexthop": [ { "destination-ipv6": [ "2001:db8:1::/48/0" ], "source-ipv6": [ "2001:db8:2::/64/0" ], "next-header": [ "=udp" ], "destination-port": [ "=53" ], "string": "flow destination-ipv6 2001:db8:1::/48/0 source-ipv6 2001:db8:2::/64/0 next-header =udp destination-port =53" } ] } } } } } }"#;
        let ev = decode(line);
        let [Event::Announce { route, .. }] = ev.as_slice() else {
            panic!("{ev:?}")
        };
        assert_eq!(
            route.components["destination-ipv6"],
            vec!["2001:db8:1::/48/0"]
        );
        assert_eq!(route.components["next-header"], vec!["=udp"]);
        assert_eq!(route.communities, vec!["rate-limit:1000".to_string()]);
    }

    #[test]
    fn first_answer_is_always_written_a_withdrawal_included() {
        // No scrubd behind the socket: unhealthy from the first check. A previous bridge may
        // have left the prefix announced in ExaBGP, so it is withdrawn at once.
        let dir = tempfile::tempdir().unwrap();
        let cfg = BridgeConfig {
            socket: dir.path().join("none.sock"),
            announce: vec!["203.0.113.0/24".into(), "198.51.100.0/24".into()],
            next_hop: "self".into(),
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(10),
        };
        let mut out = Vec::new();
        run(
            &cfg,
            std::io::Cursor::new(ANNOUNCE.as_bytes().to_vec()),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "withdraw route 203.0.113.0/24 next-hop self\nwithdraw route 198.51.100.0/24 next-hop self\n"
        );
    }

    #[test]
    fn flow_text_keeps_lists_and_and_chains() {
        let c = flow_components(
            "flow destination-ipv4 10.0.0.7/32 protocol [ =udp =tcp ] source-port [ =123 =19 ] tcp-flags [ =syn+ack&!fin ] next-hop 1.2.3.4",
        )
        .unwrap();
        assert_eq!(c["protocol"], vec!["=udp", "=tcp"]);
        assert_eq!(c["tcp-flags"], vec!["=syn+ack&!fin"]);
        assert!(!c.contains_key("next-hop"));
        assert!(flow_components("flow protocol [ =udp").is_err());
        assert!(flow_components("route 10.0.0.0/24").is_err());
    }
}
