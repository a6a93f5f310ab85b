//! The agent's link to the controllers: one gRPC bidirectional stream (`AgentLink.Session`) at a
//! time, to the controller that leads. Hello, verdicts and acks go up; Welcome, desired state and
//! commands come down.
//!
//! It runs as its own task and never blocks detection: the daemon publishes the latest verdict
//! into a watch channel and moves on; while no controller is reached, only the newest verdict is
//! kept.
//!
//! Finding the leader: the agent tries the URLs of its list in turn. A controller that does not
//! lead answers the Hello with a Welcome naming the leader (`redirect`) and ends the session; the
//! agent connects there next, in or out of its list. One that knows of no leader (an election is
//! under way) answers UNAVAILABLE; it, one that cannot be reached, and one that welcomes with a
//! lower leadership than the agent has seen (a deposed leader still running) send the agent on
//! to the next URL. A Welcome without a redirect is a leader's. While an election is under
//! way, a follower holds the Hello until the new leader is known, and redirects then. Every try waits
//! a jittered backoff that doubles to [`BACKOFF_MAX`] and starts over once a session has lasted,
//! so a fleet of agents does not hammer the controllers while none leads.
//!
//! With TLS, every controller is dialled over https with the same configuration, redirects too:
//! the controller must present a certificate for `vigil-controller` from the agent's CA, and a
//! redirect to a plain http:// URL is refused, so that no follower can talk the agent out of TLS.
//!
//! A change of leader is no fault: it is one info line. Failures are logged as warnings only once
//! the agent has been without a leader for [`QUIET`], and then once per URL and error.
use std::{collections::HashMap, time::Duration};

use rand::Rng;
use tokio::{
    sync::{mpsc, watch},
    time::{Instant, timeout},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Streaming,
    transport::{ClientTlsConfig, Endpoint},
};
use vigil_proto::{
    PROTOCOL_VERSION,
    limits::{MAX_ACK_ERROR_LEN, MAX_CONTROLLER_MESSAGE_BYTES, truncate},
    v1::{
        self, agent_link_client::AgentLinkClient, agent_message::Msg as Up,
        controller_message::Msg as Down,
    },
};

use crate::error::{AgentError, Result};

/// The first wait between tries: a redirect is followed almost at once.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest wait between tries: short, because the new leader is elected a second or so
/// after the old one died and the agent should reach it at once (its server may be the primary
/// to fail over). It does not make a fleet hammer the controllers: while none leads, a follower
/// holds each hello until one is elected (up to 1.5 s), so only controllers that cannot be
/// reached at all are tried this often.
pub const BACKOFF_MAX: Duration = Duration::from_millis(250);
/// A session that lasted this long was no flapping one: the backoff starts over.
const SESSION_LASTED: Duration = Duration::from_secs(5);
/// Without a leader for this long, failures are worth a warning: longer than an election takes.
pub const QUIET: Duration = Duration::from_secs(5);
const CONNECT_LIMIT: Duration = Duration::from_secs(1);
const WELCOME_LIMIT: Duration = Duration::from_secs(2);
/// Messages queued toward the controller; past this, verdicts are dropped (a newer one follows).
const OUTBOUND: usize = 64;

/// The daemon's side of the link.
pub struct Link {
    /// The newest verdict; the link sends it when it changes.
    pub verdicts: watch::Sender<Option<v1::Verdict>>,
    /// Command outcomes, sent in order.
    pub acks: mpsc::Sender<v1::CommandAck>,
    /// Welcome (from a leader), desired state and commands from the controller.
    pub inbound: mpsc::Receiver<Down>,
    /// When the controller was last heard from (None: never).
    pub last_heard: watch::Receiver<Option<Instant>>,
    /// The leading controller's URL while a session with it is open (it welcomed the agent as
    /// the leader); None between sessions.
    pub linked: watch::Receiver<Option<String>>,
    /// The highest leadership the daemon has admitted: a controller that welcomes the agent with
    /// a lower one no longer leads, and the link moves on.
    pub leadership: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The controller of the current or last session.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Leader {
    url: String,
    leadership: u64,
}

struct Shared {
    /// The configured controllers, tried in turn; never empty.
    urls: Vec<String>,
    hello: v1::Hello,
    verdicts: watch::Receiver<Option<v1::Verdict>>,
    acks: mpsc::Receiver<v1::CommandAck>,
    inbound: mpsc::Sender<Down>,
    last_heard: watch::Sender<Option<Instant>>,
    linked: watch::Sender<Option<String>>,
    leadership: watch::Receiver<u64>,
    /// Mutual TLS for every controller, redirects included.
    tls: Option<ClientTlsConfig>,
}

/// Starts the link task. `urls` are the controllers' gRPC URLs, checked by the configuration;
/// an empty list falls back to [`vigil_proto::DEFAULT_CONTROLLER_URL`]. With `tls`, every
/// controller is reached over it.
pub fn spawn(mut urls: Vec<String>, hello: v1::Hello, tls: Option<ClientTlsConfig>) -> Link {
    if urls.is_empty() {
        urls.push(vigil_proto::DEFAULT_CONTROLLER_URL.to_string());
    }
    let (verdicts, verdicts_rx) = watch::channel(None);
    let (acks, acks_rx) = mpsc::channel(64);
    let (inbound_tx, inbound) = mpsc::channel(64);
    let (heard_tx, last_heard) = watch::channel(None);
    let (linked_tx, linked) = watch::channel(None);
    let (leadership, leadership_rx) = watch::channel(0);
    let shared = Shared {
        urls,
        hello,
        verdicts: verdicts_rx,
        acks: acks_rx,
        inbound: inbound_tx,
        last_heard: heard_tx,
        linked: linked_tx,
        leadership: leadership_rx,
        tls,
    };
    let task = tokio::spawn(run(shared));
    Link {
        verdicts,
        acks,
        inbound,
        last_heard,
        linked,
        leadership,
        task,
    }
}

/// Which controller to try next: the one a follower named, else the next of the list.
#[derive(Debug, Default)]
struct Targets {
    next: usize,
    redirect: Option<String>,
}

impl Targets {
    fn next(&mut self, urls: &[String]) -> String {
        if let Some(url) = self.redirect.take() {
            return url;
        }
        let url = urls[self.next % urls.len()].clone();
        self.next = (self.next + 1) % urls.len();
        url
    }
}

/// How a try that got a Welcome went.
enum Welcomed {
    /// The leader.
    Open {
        welcome: v1::Welcome,
        tx: mpsc::Sender<v1::AgentMessage>,
        down: Box<Streaming<v1::ControllerMessage>>,
    },
    /// A follower naming its leader's URL.
    Redirect(String),
    /// A controller that welcomed with a lower leadership than the agent has seen: a deposed
    /// leader, or a follower (which holds none).
    Below { leadership: u64, highest: u64 },
}

/// What the link knows of the leader, and what it has said of failures.
#[derive(Debug)]
struct Watch {
    /// The controller of the last session that led.
    leader: Option<Leader>,
    /// Since when the agent has had no session with a leader (from its start, at first).
    leaderless_since: Instant,
    /// What was said of each URL's failures, so that each is said once.
    said: HashMap<String, String>,
}

impl Watch {
    fn new() -> Self {
        Self {
            leader: None,
            leaderless_since: Instant::now(),
            said: HashMap::new(),
        }
    }

    /// A session at `url` turned out to lead: one info line, which names a change of leader.
    fn led(&mut self, url: &str, welcome: &v1::Welcome) {
        let now = Leader {
            url: url.to_string(),
            leadership: welcome.leadership,
        };
        match &self.leader {
            Some(before) if *before != now => tracing::info!(
                controller = %url,
                leadership = welcome.leadership,
                previous = %before.url,
                previous_leadership = before.leadership,
                version = %welcome.controller_version,
                "controller leader changed"
            ),
            _ => tracing::info!(
                controller = %url,
                leadership = welcome.leadership,
                version = %welcome.controller_version,
                "connected to the controller"
            ),
        }
        self.leader = Some(now);
        // The next outage is told afresh.
        self.said.clear();
    }

    /// The session with the leader ended.
    fn lost(&mut self) {
        self.leaderless_since = Instant::now();
    }

    /// A try of `url` failed with `why`. `lasting`: a failure no retry will mend (another
    /// protocol version), said at once; others only once the agent has been without a leader
    /// for [`QUIET`], since a leader's handover looks the same for a moment.
    fn failed(&mut self, url: &str, why: String, lasting: bool) {
        let leaderless_for = self.leaderless_since.elapsed();
        if !lasting && leaderless_for < QUIET {
            tracing::debug!(controller = %url, error = %why, "controller try failed; trying the next");
            return;
        }
        if self.said.get(url) == Some(&why) {
            return;
        }
        if lasting {
            tracing::error!(controller = %url, error = %why, "controller link down; retrying with backoff");
        } else {
            tracing::warn!(
                controller = %url,
                error = %why,
                leaderless_ms = leaderless_for.as_millis() as u64,
                "controller link down; retrying with backoff"
            );
        }
        self.said.insert(url.to_string(), why);
    }
}

async fn run(mut shared: Shared) {
    let mut backoff = BACKOFF_MIN;
    let mut targets = Targets::default();
    let mut watch = Watch::new();
    loop {
        let url = targets.next(&shared.urls);
        match welcome(&mut shared, &url).await {
            Ok(Welcomed::Open { welcome, tx, down }) => {
                let began = Instant::now();
                let served = serve(&mut shared, &url, welcome, tx, down, &mut watch).await;
                shared.linked.send_replace(None);
                if shared.inbound.is_closed() {
                    return; // the daemon is gone
                }
                watch.lost();
                if began.elapsed() > SESSION_LASTED {
                    backoff = BACKOFF_MIN;
                }
                // Said at debug only: a session that ends is how a leader hands over, and the
                // next tries say whether a controller is still to be had.
                let why = match served {
                    Ok(()) => AgentError::LinkClosed.to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::debug!(controller = %url, error = %why, "controller session ended; looking for the leader");
            }
            Ok(Welcomed::Redirect(to)) => {
                tracing::debug!(controller = %url, leader = %to, "redirected to the leader");
                targets.redirect = Some(to);
            }
            Ok(Welcomed::Below {
                leadership,
                highest,
            }) => watch.failed(
                &url,
                format!(
                    "it holds leadership {leadership}, below the {highest} this agent has seen: \
                     it does not lead"
                ),
                false,
            ),
            Err(e) => {
                if shared.inbound.is_closed() {
                    return;
                }
                let lasting = matches!(
                    e,
                    AgentError::ProtocolVersion { .. } | AgentError::PlainController(_)
                );
                watch.failed(&url, e.to_string(), lasting);
            }
        }
        let jitter = rand::rng().random_range(0.5..1.5);
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Connects to `url`, says Hello, and reads its Welcome.
async fn welcome(shared: &mut Shared, url: &str) -> Result<Welcomed> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|error| AgentError::ControllerUrl {
            url: url.to_string(),
            error,
        })?
        .connect_timeout(CONNECT_LIMIT)
        .tcp_nodelay(true)
        // A dead path with no RST is noticed by HTTP/2 pings, not only by silence.
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(1))
        .keep_alive_while_idle(true);
    if let Some(tls) = &shared.tls {
        // The configured URLs were checked; this catches a follower's redirect.
        if !url.starts_with("https://") {
            return Err(AgentError::PlainController(url.to_string()));
        }
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(AgentError::ControllerConnect)?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(AgentError::ControllerConnect)?;
    // Set, not left to tonic's default: the controller's largest desired state is checked
    // against this bound (a desired state the agent cannot decode would drop its session).
    let mut client =
        AgentLinkClient::new(channel).max_decoding_message_size(MAX_CONTROLLER_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel(OUTBOUND);
    let hello = v1::AgentMessage {
        msg: Some(Up::Hello(shared.hello.clone())),
    };
    tx.try_send(hello).map_err(|_| AgentError::LinkClosed)?;
    let response = client
        .session(ReceiverStream::new(rx))
        .await
        .map_err(|s| AgentError::ControllerRefused(s.message().to_string()))?;
    let mut down = response.into_inner();
    let welcome = match timeout(WELCOME_LIMIT, down.message()).await {
        Err(_) => return Err(AgentError::NoWelcome(WELCOME_LIMIT)),
        Ok(Err(s)) => return Err(AgentError::ControllerRefused(s.message().to_string())),
        Ok(Ok(None)) => return Err(AgentError::LinkClosed),
        Ok(Ok(Some(v1::ControllerMessage {
            msg: Some(Down::Welcome(w)),
        }))) => w,
        Ok(Ok(Some(_))) => {
            return Err(AgentError::LinkBroken(
                "the first message was not a Welcome".into(),
            ));
        }
    };
    if welcome.protocol_version != PROTOCOL_VERSION {
        return Err(AgentError::ProtocolVersion {
            ours: PROTOCOL_VERSION,
            theirs: welcome.protocol_version,
        });
    }
    // A follower's session ends after its Welcome; dropping `tx` and `down` ends ours.
    if !welcome.redirect.is_empty() {
        return Ok(Welcomed::Redirect(welcome.redirect));
    }
    let highest = *shared.leadership.borrow();
    if welcome.leadership < highest {
        return Ok(Welcomed::Below {
            leadership: welcome.leadership,
            highest,
        });
    }
    Ok(Welcomed::Open {
        welcome,
        tx,
        down: Box::new(down),
    })
}

/// Carries the leader's session until it ends: its Welcome to the daemon first (which takes in
/// its leadership), then verdicts and acks up as they come, desired state and commands down.
async fn serve(
    shared: &mut Shared,
    url: &str,
    welcome: v1::Welcome,
    tx: mpsc::Sender<v1::AgentMessage>,
    mut down: Box<Streaming<v1::ControllerMessage>>,
    watch: &mut Watch,
) -> Result<()> {
    shared.last_heard.send_replace(Some(Instant::now()));
    if !lead(shared, url, welcome, watch).await {
        return Ok(()); // the daemon is gone
    }
    shared.linked.send_replace(Some(url.to_string()));
    // Whatever is newest goes first: a leader may wait for a verdict before it says anything.
    shared.verdicts.mark_changed();
    loop {
        tokio::select! {
            changed = shared.verdicts.changed() => {
                if changed.is_err() {
                    return Ok(()); // the daemon is gone
                }
                let verdict = *shared.verdicts.borrow_and_update();
                if let Some(v) = verdict {
                    // Full queue: the controller is slow; this verdict is superseded by the next.
                    let _ = tx.try_send(v1::AgentMessage { msg: Some(Up::Verdict(v)) });
                }
            }
            Some(mut ack) = shared.acks.recv() => {
                // A server's error can be long; the controller takes acks up to a bound.
                truncate(&mut ack.error, MAX_ACK_ERROR_LEN);
                if tx.send(v1::AgentMessage { msg: Some(Up::Ack(ack)) }).await.is_err() {
                    return Err(AgentError::LinkClosed);
                }
            }
            msg = down.message() => match msg {
                Ok(Some(v1::ControllerMessage { msg: Some(m) })) => {
                    shared.last_heard.send_replace(Some(Instant::now()));
                    if shared.inbound.send(m).await.is_err() {
                        return Ok(()); // the daemon is gone
                    }
                }
                Ok(Some(v1::ControllerMessage { msg: None })) => {
                    tracing::warn!("the controller sent an empty message; ignoring it");
                }
                Ok(None) => return Err(AgentError::LinkClosed),
                Err(s) => return Err(AgentError::LinkBroken(s.message().to_string())),
            },
        }
    }
}

/// The session at `url` leads: said once, and its Welcome goes to the daemon, which takes in its
/// leadership. False when the daemon is gone.
async fn lead(shared: &mut Shared, url: &str, welcome: v1::Welcome, watch: &mut Watch) -> bool {
    watch.led(url, &welcome);
    shared.inbound.send(Down::Welcome(welcome)).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_is_tried_next_and_then_the_list_goes_on_in_turn() {
        let urls: Vec<String> = ["http://a:1", "http://b:1", "http://c:1"]
            .map(String::from)
            .into();
        let mut t = Targets::default();
        assert_eq!(t.next(&urls), "http://a:1");
        t.redirect = Some("http://leader:9".into());
        assert_eq!(t.next(&urls), "http://leader:9", "out of the list too");
        assert_eq!(t.next(&urls), "http://b:1");
        assert_eq!(t.next(&urls), "http://c:1");
        assert_eq!(t.next(&urls), "http://a:1");
    }
}
