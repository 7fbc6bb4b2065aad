//! `facegate members`: list, show, remove, renew and rename members of a signed gallery.

use anyhow::{Context, Result};
use facegate_shared::{keys, Date, Member, MemberId};
use std::path::Path;
use std::process::ExitCode;

use super::*;

/// `facegate members ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MembersCmd {
    /// List members.
    List,
    /// Show one member.
    Show { id: String },
    /// Remove a member and delete their embeddings from the file.
    Remove { id: String },
    /// Change a member's last valid day.
    Renew {
        id: String,
        #[arg(long)]
        valid_until: String,
    },
    /// Change a member's display name.
    Rename { id: String, name: String },
}

/// Runs a members command.
pub fn members(gallery: &Path, key: &Path, cmd: &MembersCmd, json: bool) -> Result<ExitCode> {
    let key = keys::read_signing_key(key)?;
    let mut g = load_own_gallery(gallery, &key)?;
    let show = |m: &Member| {
        format!(
            "{:<12} {:<28} {:>2} photo(s)  valid {} .. {}{}",
            m.id.as_str(),
            m.name,
            m.embeddings.len(),
            m.validity.from.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
            m.validity.until.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
            if m.validity.active { "" } else { "  (suspended)" }
        )
    };
    match cmd {
        MembersCmd::List => {
            if json {
                let v: Vec<_> = g.members().iter().map(|m| serde_json::json!({"id": m.id.as_str(), "name": m.name, "photos": m.embeddings.len(), "valid_from": m.validity.from.map(|d| d.to_string()), "valid_until": m.validity.until.map(|d| d.to_string()), "active": m.validity.active})).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for m in g.members() {
                    println!("{}", show(m));
                }
            }
        }
        MembersCmd::Show { id } => {
            let m = g.member(&MemberId::new(id)?).with_context(|| format!("no member #{id}"))?;
            println!("{}", show(m));
        }
        MembersCmd::Remove { id } => {
            let m = g.remove(&MemberId::new(id)?)?;
            save_gallery(gallery, &mut g, &key)?;
            println!("removed #{} {} and their {} embedding(s)", m.id, m.name, m.embeddings.len());
        }
        MembersCmd::Renew { id, valid_until } => {
            let d = Date::parse(valid_until)?;
            g.member_mut(&MemberId::new(id)?)?.validity.until = Some(d);
            save_gallery(gallery, &mut g, &key)?;
            println!("#{id} valid until {d}");
        }
        MembersCmd::Rename { id, name } => {
            facegate_shared::check_name(name)?;
            g.member_mut(&MemberId::new(id)?)?.name = name.clone();
            save_gallery(gallery, &mut g, &key)?;
            println!("#{id} is now {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
