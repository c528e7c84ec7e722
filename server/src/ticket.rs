//! The Spice ticket: a fresh RSA-1024 key per link, OAEP-SHA1 decryption of the client's
//! 128-byte ticket, and the password check.
//!
//! Each key decrypts exactly one ticket and is then dropped ([`LinkKey::decrypt`] takes `self`),
//! as spice-server does. That is what keeps RUSTSEC-2023-0071 (a timing side channel that needs
//! many decryptions under one key) out of reach, and stops replay of a sniffed ticket. The
//! ticket scheme is weak by design (≤ 60-byte password, RSA-1024): TLS or a loopback-only
//! listener is the real protection.

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};
use rsa::pkcs8::EncodePublicKey;
use rsa::rand_core::OsRng;
use rsa::{Oaep, RsaPrivateKey};
use thiserror::Error;

use crate::wire::{PUBKEY_BYTES, TICKET_BYTES};

/// Longest password spice-gtk will send (SPICE_MAX_PASSWORD_LENGTH).
pub const MAX_PASSWORD_LEN: usize = 60;

/// How many keys the background generator keeps ready.
const POOL_SIZE: usize = 4;

/// Ticket errors.
#[derive(Debug, Error)]
pub enum TicketError {
    #[error("RSA key generation failed: {0}")]
    KeyGen(rsa::Error),
    #[error("public key encoding failed: {0}")]
    Encode(String),
    #[error("public key DER is {0} bytes, expected 162")]
    PubKeySize(usize),
    #[error("ticket decryption failed")]
    Decrypt,
    #[error("the key generator thread is gone")]
    PoolClosed,
}

/// A one-use RSA-1024 key pair for one link.
pub struct LinkKey {
    private: RsaPrivateKey,
    public_der: [u8; PUBKEY_BYTES],
}

impl LinkKey {
    /// Generates a new RSA-1024 key with e = 65537.
    pub fn generate() -> Result<LinkKey, TicketError> {
        let private = RsaPrivateKey::new(&mut OsRng, 1024).map_err(TicketError::KeyGen)?;
        let der = private
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| TicketError::Encode(e.to_string()))?;
        let public_der: [u8; PUBKEY_BYTES] = der
            .as_bytes()
            .try_into()
            .map_err(|_| TicketError::PubKeySize(der.as_bytes().len()))?;
        Ok(LinkKey {
            private,
            public_der,
        })
    }

    /// The DER SubjectPublicKeyInfo sent in the link reply.
    pub fn public_der(&self) -> &[u8; PUBKEY_BYTES] {
        &self.public_der
    }

    /// Decrypts the client's ticket and returns the password (trailing NULs stripped).
    /// Consumes the key, so no key can ever serve as a decryption oracle:
    ///
    /// ```compile_fail
    /// # fn f(key: saffron_server::ticket::LinkKey, t: &[u8; 128]) {
    /// let _ = key.decrypt(t);
    /// let _ = key.decrypt(t); // error: use of moved value
    /// # }
    /// ```
    ///
    /// One misaligned form is also read: spice-html5 writes the ciphertext's big-endian value
    /// with its leading zero bytes dropped, left-aligned and padded with zeros at the end. Its
    /// value has a leading zero byte for about one link in 200, and a page links four or more
    /// channels, so without this a browser's connection is refused now and then for no reason
    /// a user could see. Such a ticket ends in a zero byte and fails as it stands; shifted
    /// back, it is the ticket that was meant. A wrong password fails both ways.
    pub fn decrypt(self, ticket: &[u8; TICKET_BYTES]) -> Result<Vec<u8>, TicketError> {
        let oaep = || Oaep::new::<sha1::Sha1>();
        let mut plain = match self.private.decrypt(oaep(), ticket) {
            Ok(plain) => plain,
            Err(_) if ticket[TICKET_BYTES - 1] == 0 => {
                let mut aligned = [0u8; TICKET_BYTES];
                aligned[1..].copy_from_slice(&ticket[..TICKET_BYTES - 1]);
                self.private
                    .decrypt(oaep(), &aligned)
                    .map_err(|_| TicketError::Decrypt)?
            }
            Err(_) => return Err(TicketError::Decrypt),
        };
        while plain.last() == Some(&0) {
            plain.pop();
        }
        Ok(plain)
    }
}

/// Keeps a few fresh keys ready so that a link does not wait for key generation.
pub struct KeyPool {
    rx: Receiver<Result<LinkKey, TicketError>>,
}

impl KeyPool {
    /// Starts the generator thread. It stops when the pool is dropped.
    pub fn start() -> KeyPool {
        let (tx, rx) = bounded(POOL_SIZE);
        let spawned = thread::Builder::new()
            .name("spice-keygen".into())
            .spawn(move || while tx.send(LinkKey::generate()).is_ok() {});
        if let Err(e) = spawned {
            tracing::warn!(%e, "cannot start the key generator thread; generating inline");
        }
        KeyPool { rx }
    }

    /// Takes a never-used key (generating one inline if the generator is gone).
    pub fn take(&self) -> Result<LinkKey, TicketError> {
        match self.rx.recv() {
            Ok(key) => key,
            Err(_) => LinkKey::generate(),
        }
    }
}

/// The configured password and when it stops being valid.
#[derive(Clone)]
pub struct Ticket {
    password: Vec<u8>,
    expires: Option<Instant>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("password", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

impl Ticket {
    /// A password valid for `lifetime` (forever when `None`).
    pub fn new(password: &str, lifetime: Option<Duration>) -> Ticket {
        Ticket {
            password: password.as_bytes().to_vec(),
            expires: lifetime.and_then(|l| Instant::now().checked_add(l)),
        }
    }

    /// Whether `candidate` (the decrypted ticket) matches and the ticket has not expired.
    /// An empty configured password never matches, as in spice-server.
    pub fn accepts(&self, candidate: &[u8], now: Instant) -> bool {
        let fresh = self.expires.is_none_or(|t| now < t);
        let equal = constant_time_eq(&self.password, candidate);
        fresh & equal & !self.password.is_empty()
    }
}

/// Compares in time that depends only on the lengths, not on where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::RsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;

    pub(crate) fn encrypt(der: &[u8], plain: &[u8]) -> [u8; TICKET_BYTES] {
        let public = RsaPublicKey::from_public_key_der(der).unwrap();
        let ct = public
            .encrypt(&mut OsRng, Oaep::new::<sha1::Sha1>(), plain)
            .unwrap();
        ct.try_into().unwrap()
    }

    #[test]
    fn roundtrip_and_der_size() {
        let pool = KeyPool::start();
        let key = pool.take().unwrap();
        assert_eq!(key.public_der().len(), 162);
        let ct = encrypt(key.public_der(), b"secret\0");
        assert_eq!(key.decrypt(&ct).unwrap(), b"secret");
    }

    /// spice-html5's form of a ciphertext whose first byte is zero: the other 127 bytes, then
    /// a zero. It is read as meant; the same bytes with a wrong password are still refused.
    #[test]
    fn a_ciphertext_with_a_leading_zero_written_as_spice_html5_does() {
        let key = LinkKey::generate().unwrap();
        let der = *key.public_der();
        let html5 = |plain: &[u8]| {
            let ct = (0..20_000)
                .map(|_| encrypt(&der, plain))
                .find(|ct| ct[0] == 0)
                .expect("one ciphertext in about 200 starts with a zero byte");
            let mut shifted = [0u8; TICKET_BYTES];
            shifted[..TICKET_BYTES - 1].copy_from_slice(&ct[1..]);
            shifted
        };
        let good = html5(b"secret\0");
        let wrong = html5(b"wrong\0");
        let other = LinkKey::generate().unwrap();
        assert!(other.decrypt(&good).is_err(), "another link's key");
        let pool = KeyPool::start();
        assert!(pool.take().unwrap().decrypt(&good).is_err());
        // The key is consumed by decrypt, so each check decrypts with a copy of the same key.
        let copy = || LinkKey {
            private: key.private.clone(),
            public_der: der,
        };
        assert_eq!(copy().decrypt(&good).unwrap(), b"secret");
        assert_eq!(
            copy().decrypt(&wrong).unwrap(),
            b"wrong",
            "the password is checked later"
        );
        let mut truncated = good;
        truncated[0] ^= 1;
        assert!(copy().decrypt(&truncated).is_err(), "a corrupted ticket");
    }

    #[test]
    fn keys_are_fresh_and_foreign_tickets_fail() {
        let pool = KeyPool::start();
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert_ne!(a.public_der(), b.public_der());
        let ct = encrypt(a.public_der(), b"x\0");
        assert!(b.decrypt(&ct).is_err());
        assert!(a.decrypt(&[0u8; 128]).is_err());
    }

    #[test]
    fn ticket_rules() {
        let now = Instant::now();
        let t = Ticket::new("pw", None);
        assert!(t.accepts(b"pw", now));
        assert!(!t.accepts(b"pw2", now));
        assert!(!t.accepts(b"p", now));
        assert!(!Ticket::new("", None).accepts(b"", now));
        let expired = Ticket::new("pw", Some(Duration::ZERO));
        assert!(!expired.accepts(b"pw", now + Duration::from_millis(1)));
        assert!(constant_time_eq(b"", b""));
    }
}
