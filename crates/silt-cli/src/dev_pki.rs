//! `silt dev --secure`: the certificates of a local secure cluster, under `DATA_DIR/tls`: a CA,
//! one certificate per broker (subject CN `broker-<id>`, for 127.0.0.1 and localhost, server
//! and client auth: it serves clients and calls its peers) and an `admin` client certificate.
//! Made once and kept, so a restarted dev cluster and its clients keep trusting each other; a
//! missing file makes them all again (a new CA).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

use crate::error::CliError;

/// Where the dev cluster's certificates are.
#[derive(Debug, Clone)]
pub struct DevPki {
    pub dir: PathBuf,
}

impl DevPki {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn broker(&self, id: u64) -> (PathBuf, PathBuf) {
        (self.dir.join(format!("broker-{id}.crt")), self.dir.join(format!("broker-{id}.key")))
    }
    pub fn admin(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("admin.crt"), self.dir.join("admin.key"))
    }

    fn files(&self, brokers: u32) -> Vec<PathBuf> {
        let mut f = vec![self.ca()];
        for id in 1..=u64::from(brokers) {
            let (c, k) = self.broker(id);
            f.extend([c, k]);
        }
        let (c, k) = self.admin();
        f.extend([c, k]);
        f
    }

    /// The admin's TLS options for this process's own client.
    pub fn admin_tls(&self) -> Result<silt_client::TlsOptions, CliError> {
        let (cert, key) = self.admin();
        Ok(silt_client::TlsOptions {
            ca_pem: read(&self.ca())?,
            identity: Some((read(&cert)?, read(&key)?)),
        })
    }
}

fn read(p: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(p).map_err(|e| failed(format!("{}: {e}", p.display())))
}

fn failed(what: String) -> CliError {
    CliError::failed(what, "TLS_SETUP_FAILED")
}

/// The certificates for `brokers` brokers under `data_dir/tls`, made if any is missing.
pub fn ensure(data_dir: &Path, brokers: u32) -> Result<DevPki, CliError> {
    let pki = DevPki { dir: data_dir.join("tls") };
    if pki.files(brokers).iter().all(|f| f.exists()) {
        return Ok(pki);
    }
    std::fs::create_dir_all(&pki.dir).map_err(|e| failed(format!("{}: {e}", pki.dir.display())))?;
    let rc = |e: rcgen::Error| failed(format!("making the dev certificates: {e}"));
    let ca_key = KeyPair::generate().map_err(rc)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "silt dev CA");
    write(&pki.ca(), &ca.self_signed(&ca_key).map_err(rc)?.pem(), false)?;
    let issuer = Issuer::new(ca, ca_key);
    let sign = |cn: &str, usages: Vec<ExtendedKeyUsagePurpose>, (cert, key): (PathBuf, PathBuf)| {
        let k = KeyPair::generate().map_err(rc)?;
        let mut p =
            CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).map_err(rc)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = usages;
        write(&cert, &p.signed_by(&k, &issuer).map_err(rc)?.pem(), false)?;
        write(&key, &k.serialize_pem(), true)
    };
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    for id in 1..=u64::from(brokers) {
        sign(&format!("broker-{id}"), vec![ServerAuth, ClientAuth], pki.broker(id))?;
    }
    sign("admin", vec![ClientAuth], pki.admin())?;
    Ok(pki)
}

/// Writes `text` to `path`; private keys readable by the owner only.
fn write(path: &Path, text: &str, private: bool) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    if private {
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| failed(format!("{}: {e}", path.display())))?;
    f.write_all(text.as_bytes()).map_err(|e| failed(format!("{}: {e}", path.display())))
}
