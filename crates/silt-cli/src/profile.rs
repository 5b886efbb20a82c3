//! Connection profiles (like rpk's): named sets of connection flags in
//! `~/.config/silt/config.toml` (`$XDG_CONFIG_HOME/silt/config.toml`, or the file `$SILT_CONFIG`
//! names), chosen with `--profile NAME` or the file's `default_profile`. A flag on the command
//! line wins over the profile; relative paths in a profile are relative to the file.
//!
//! ```toml
//! default_profile = "prod"
//! [profiles.prod]
//! bootstrap = "broker-1:9300,broker-2:9300"
//! tls_ca = "certs/ca.crt"
//! user = "alice"            # password: SILT_PASSWORD, else a prompt
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::CliError;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// One profile's settings (every one optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub bootstrap: Option<String>,
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub user: Option<String>,
}

/// The profile file's path.
pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SILT_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
    };
    Some(base.join("silt").join("config.toml"))
}

/// The profile `name` (or the default one) from the file at `path`; an empty profile when no
/// profile was asked for and the file has none.
pub fn load(path: Option<&Path>, name: Option<&str>) -> Result<Profile, CliError> {
    let text = match path.map(std::fs::read_to_string) {
        Some(Ok(t)) => t,
        Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound && name.is_none() => {
            return Ok(Profile::default());
        }
        Some(Err(e)) => {
            let p = path.map_or_else(String::new, |p| p.display().to_string());
            return Err(CliError::usage(format!("profile file {p}: {e}")));
        }
        None if name.is_none() => return Ok(Profile::default()),
        None => return Err(CliError::usage("--profile: no profile file (set SILT_CONFIG)")),
    };
    let shown = path.map_or_else(String::new, |p| p.display().to_string());
    let file: ProfileFile = toml::from_str(&text)
        .map_err(|e| CliError::usage(format!("profile file {shown}: {}", e.message())))?;
    let Some(name) = name.map(str::to_string).or(file.default_profile.clone()) else {
        return Ok(Profile::default());
    };
    let mut p = file.profiles.get(&name).cloned().ok_or_else(|| {
        let known: Vec<&String> = file.profiles.keys().collect();
        CliError::usage(format!("no profile {name:?} in {shown} (profiles: {known:?})"))
    })?;
    let dir = path.and_then(Path::parent).unwrap_or(Path::new("."));
    for f in [&mut p.tls_ca, &mut p.tls_cert, &mut p.tls_key].into_iter().flatten() {
        if f.is_relative() {
            *f = dir.join(&*f);
        }
    }
    Ok(p)
}

/// A profile file holding one profile, as `silt dev --secure` writes it.
pub fn render(name: &str, p: &Profile) -> String {
    let mut file = toml::Table::new();
    file.insert("default_profile".into(), toml::Value::String(name.into()));
    let mut profiles = toml::Table::new();
    profiles.insert(
        name.into(),
        toml::Value::try_from(p).unwrap_or(toml::Value::Table(toml::Table::new())),
    );
    file.insert("profiles".into(), toml::Value::Table(profiles));
    toml::to_string(&file).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_or_default_profile_is_read_with_paths_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(
            &file,
            "default_profile = \"a\"\n[profiles.a]\nbootstrap = \"h:1\"\ntls_ca = \"ca.pem\"\n\
             [profiles.b]\nuser = \"bob\"\ntls_ca = \"/abs/ca.pem\"\n",
        )
        .unwrap();
        let a = load(Some(&file), None).unwrap();
        assert_eq!(a.bootstrap.as_deref(), Some("h:1"));
        assert_eq!(a.tls_ca, Some(dir.path().join("ca.pem")));
        let b = load(Some(&file), Some("b")).unwrap();
        assert_eq!(b.user.as_deref(), Some("bob"));
        assert_eq!(b.tls_ca, Some(PathBuf::from("/abs/ca.pem")));
        assert!(load(Some(&file), Some("c")).unwrap_err().what.contains("no profile \"c\""));
        assert_eq!(load(Some(&dir.path().join("none.toml")), None).unwrap(), Profile::default());
        assert!(load(Some(&dir.path().join("none.toml")), Some("a")).is_err());
        std::fs::write(&file, "[profiles.a]\nbootstrapp = \"x\"\n").unwrap();
        assert!(load(Some(&file), Some("a")).is_err(), "unknown keys are errors");
    }

    #[test]
    fn a_rendered_profile_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        let p = Profile {
            bootstrap: Some("127.0.0.1:9300".into()),
            tls_ca: Some("/d/ca.crt".into()),
            tls_cert: Some("/d/admin.crt".into()),
            tls_key: Some("/d/admin.key".into()),
            user: None,
        };
        std::fs::write(&file, render("dev-secure", &p)).unwrap();
        assert_eq!(load(Some(&file), None).unwrap(), p);
    }
}
