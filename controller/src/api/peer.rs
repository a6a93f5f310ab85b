//! Who is calling: the identity the client's TLS certificate names, and what each identity may
//! do. With TLS, the controller believes nothing a peer claims beyond its certificate: an agent's
//! Hello must name the data store and node its certificate names, and only an operator's
//! certificate may change anything. Without TLS (loopback development) every caller may do
//! everything, as the controller warned at start.
use tonic::{Request, Status};
use vigil_proto::tls::Identity;

/// The caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// The controller serves without TLS: nobody is authenticated, and nobody is refused.
    Unauthenticated,
    /// The identity of a certificate the client CA signed (the handshake checked that).
    Verified(Identity),
}

impl Peer {
    /// The caller of `request`. With `tls` on, a request without a certificate naming a vigil
    /// identity is refused (the handshake already requires a certificate from the CA; this also
    /// requires that it name someone).
    pub fn of<T>(request: &Request<T>, tls: bool) -> Result<Peer, Status> {
        if !tls {
            return Ok(Peer::Unauthenticated);
        }
        let certs = request.peer_certs().ok_or_else(|| {
            Status::unauthenticated("a client certificate from the controller's CA is required")
        })?;
        let leaf = certs.first().ok_or_else(|| {
            Status::unauthenticated("a client certificate from the controller's CA is required")
        })?;
        Identity::from_der(leaf)
            .map(Peer::Verified)
            .map_err(|e| Status::permission_denied(format!("the client certificate: {e}")))
    }

    /// Whether this caller may open an agent session as node `node` of `datastore`: only the
    /// certificate of exactly that node may. A refusal is logged, naming both sides.
    pub fn may_be_node(&self, datastore: &str, node: &str) -> Result<(), Status> {
        let certified = match self {
            Peer::Unauthenticated => return Ok(()),
            Peer::Verified(Identity::Node {
                datastore: d,
                node: n,
            }) if d == datastore && n == node => return Ok(()),
            Peer::Verified(identity) => identity,
        };
        let claimed = Identity::Node {
            datastore: datastore.to_string(),
            node: node.to_string(),
        };
        tracing::warn!(
            certificate = %certified,
            hello = %claimed,
            "refused an agent session: its hello claims another identity than its certificate"
        );
        Err(Status::permission_denied(format!(
            "the certificate names {certified}, but the hello claims {claimed}"
        )))
    }

    /// Whether this caller may change state (`what`, for the message): only an operator may.
    pub fn may_operate(&self, what: &str) -> Result<(), Status> {
        match self {
            Peer::Unauthenticated | Peer::Verified(Identity::Operator(_)) => Ok(()),
            Peer::Verified(identity) => {
                tracing::warn!(certificate = %identity, request = what, "refused a request that needs an operator");
                Err(Status::permission_denied(format!(
                    "{what} needs an operator's certificate (vigil://operator/NAME); this one names {identity}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(d: &str, n: &str) -> Peer {
        Peer::Verified(Identity::Node {
            datastore: d.into(),
            node: n.into(),
        })
    }

    #[test]
    fn only_the_certified_node_may_say_hello_as_itself() {
        assert!(node("cache", "n1").may_be_node("cache", "n1").is_ok());
        let e = node("cache", "n1").may_be_node("cache", "n0").unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("vigil://node/cache/n1"), "{e:?}");
        assert!(e.message().contains("vigil://node/cache/n0"), "{e:?}");
        assert!(node("other", "n1").may_be_node("cache", "n1").is_err());
        for who in [Identity::Controller, Identity::Operator("admin".into())] {
            assert!(Peer::Verified(who).may_be_node("cache", "n1").is_err());
        }
        assert!(Peer::Unauthenticated.may_be_node("cache", "n1").is_ok());
    }

    #[test]
    fn only_an_operator_may_operate() {
        let op = Peer::Verified(Identity::Operator("admin".into()));
        assert!(op.may_operate("failover").is_ok());
        for who in [node("cache", "n0"), Peer::Verified(Identity::Controller)] {
            let e = who.may_operate("failover").unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied);
            assert!(e.message().contains("vigil://operator/NAME"), "{e:?}");
        }
        assert!(Peer::Unauthenticated.may_operate("failover").is_ok());
    }
}
