//! The fence's packet filter in the kernel: the `vigil-fence` object (agent-ebpf/src/fence.rs)
//! loaded, its two `cgroup_skb` programs attached to the server's cgroup, and everything pinned
//! under one bpffs directory per server port, so the fence outlives the agent:
//!
//! ```text
//! <bpffs>/vigil/fence/<port>/ingress   the ingress program's link
//!                             egress    the egress program's link
//!                             config    FENCE_CONFIG: port, epoch, kind (the lifting rule)
//!                             allow     FENCE_ALLOW: the peers let through
//!                             drops     FENCE_DROPS: packets held back, per direction
//! ```
//!
//! A link lives while it is pinned, and detaches when its pin is removed: removing the two link
//! pins is what lifts the fence. They are removed first and the maps after, so a directory with
//! no link left is a fence that is down (or was never finished), and one with a link is up.
//!
//! The object is loaded, and its programs verified, ahead of time ([`Prepared`]): loaded but not
//! attached, they run on no packet, and putting a fence up is then only writing its maps and
//! attaching, a millisecond where loading takes tens.
use std::{
    fs::File,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map, MapData, PerCpuArray},
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, links::FdLink},
};
use vigil_agent_ebpf::{FenceConfig, fence_drop};

use super::gate::AllowMap;
use crate::{
    error::{AgentError, Result},
    kernel::loader,
};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vigil-fence"));

const CONFIG: (&str, &str) = ("FENCE_CONFIG", "config");
const ALLOW: (&str, &str) = ("FENCE_ALLOW", "allow");
const DROPS: (&str, &str) = ("FENCE_DROPS", "drops");
/// (program, attach type, pin file).
const PROGRAMS: [(&str, CgroupSkbAttachType, &str); 2] = [
    ("fence_ingress", CgroupSkbAttachType::Ingress, "ingress"),
    ("fence_egress", CgroupSkbAttachType::Egress, "egress"),
];

/// The directory a fence on `port` is pinned in, under bpffs mounted at `bpffs`.
pub fn pin_dir(bpffs: &Path, port: u16) -> PathBuf {
    bpffs.join("vigil").join("fence").join(port.to_string())
}

fn map_error(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> AgentError {
    move |source| AgentError::Map { name, source }
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> AgentError {
    let context = format!("{what} {}", path.display());
    move |e| AgentError::io(context, e)
}

/// The fence object loaded with fresh maps and its programs verified, attached nowhere: the
/// next fence, ready to go up.
pub struct Prepared {
    ebpf: Ebpf,
}

impl Prepared {
    pub fn load() -> Result<Self> {
        let mut ebpf = loader::load(OBJECT)?;
        load_programs(&mut ebpf)?;
        Ok(Self { ebpf })
    }
}

/// An installed fence's maps; its links live in their pins.
pub struct Filter {
    dir: PathBuf,
    config: Array<MapData, FenceConfig>,
    drops: PerCpuArray<MapData, u64>,
}

impl Filter {
    /// Puts the `prepared` fence up on the cgroup at `cgroup`, pinned in `dir`: `config` written
    /// and `fill` given the allow map before either program is attached, so the first packet
    /// the fence sees meets the whole policy.
    pub fn put_up(
        prepared: Prepared,
        dir: &Path,
        cgroup: &Path,
        config: FenceConfig,
        fill: impl FnOnce(AllowMap) -> Result<()>,
    ) -> Result<Self> {
        let mut ebpf = prepared.ebpf;
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let mut config_map: Array<MapData, FenceConfig> = pin(&mut ebpf, dir, CONFIG)?;
        config_map.set(0, config, 0).map_err(map_error(CONFIG.0))?;
        fill(pin(&mut ebpf, dir, ALLOW)?)?;
        let drops = pin(&mut ebpf, dir, DROPS)?;
        attach_missing(&mut ebpf, dir, cgroup)?;
        Ok(Self {
            dir: dir.into(),
            config: config_map,
            drops,
        })
    }

    /// The fence pinned in `dir` by this agent or one before it, if one is up; its allow map goes
    /// to `fill`. A fence missing one of its links (the agent died while putting it up) gets it
    /// back on the cgroup `cgroup` names; a directory with no link left is a fence that came
    /// down (or never went up), and is cleared away.
    pub fn find(
        dir: &Path,
        cgroup: impl FnOnce() -> Result<PathBuf>,
        fill: impl FnOnce(AllowMap) -> Result<()>,
    ) -> Result<Option<Self>> {
        if !dir.exists() {
            return Ok(None);
        }
        let linked = PROGRAMS
            .iter()
            .filter(|(_, _, pin)| dir.join(pin).exists())
            .count();
        if linked == 0 {
            remove_dir(dir)?;
            return Ok(None);
        }
        let config = open(dir, CONFIG, Map::Array)?;
        let drops = open(dir, DROPS, Map::PerCpuArray)?;
        let allow: AllowMap = open(dir, ALLOW, Map::HashMap)?;
        fill(allow)?;
        if linked < PROGRAMS.len() {
            // The programs the missing link needs, bound to the maps already pinned.
            let mut ebpf = load_pinned(dir)?;
            load_programs(&mut ebpf)?;
            attach_missing(&mut ebpf, dir, &cgroup()?)?;
        }
        Ok(Some(Self {
            dir: dir.into(),
            config,
            drops,
        }))
    }

    pub fn config(&self) -> Result<FenceConfig> {
        self.config.get(&0, 0).map_err(map_error(CONFIG.0))
    }

    pub fn set_config(&mut self, config: FenceConfig) -> Result<()> {
        self.config.set(0, config, 0).map_err(map_error(CONFIG.0))
    }

    /// Packets held back so far: (ingress, egress).
    pub fn drops(&self) -> (u64, u64) {
        let sum = |slot: u32| {
            self.drops
                .get(&slot, 0)
                .map_or(0, |per_cpu| per_cpu.iter().sum())
        };
        (sum(fence_drop::INGRESS), sum(fence_drop::EGRESS))
    }

    /// Lifts the fence: the links' pins first (each link detaches as its pin goes), then the
    /// rest. On an error the fence may still be up, and is still this filter's to remove.
    pub fn remove(&self) -> Result<()> {
        for (_, _, pin) in PROGRAMS {
            let path = self.dir.join(pin);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io("unpinning", &path)(e));
                }
                _ => {}
            }
        }
        remove_dir(&self.dir)
    }
}

/// Removes what is left in a fence's directory (maps, nothing else) and the directory.
fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", dir)(e)),
        _ => Ok(()),
    }
}

/// The map pinned in `dir` as `pin`, of the kind `kind` makes.
fn open<T: TryFrom<Map, Error = aya::maps::MapError>>(
    dir: &Path,
    (name, pin): (&'static str, &str),
    kind: fn(MapData) -> Map,
) -> Result<T> {
    let data = MapData::from_pin(dir.join(pin)).map_err(map_error(name))?;
    T::try_from(kind(data)).map_err(map_error(name))
}

/// Takes map `name` from `ebpf` and pins it in `dir` as `pin`.
fn pin<T: TryFrom<Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    dir: &Path,
    (name, pin): (&'static str, &str),
) -> Result<T> {
    let map = ebpf
        .take_map(name)
        .ok_or(AgentError::MissingFromObject(name))?;
    let path = dir.join(pin);
    map.pin(&path)
        .map_err(|source| AgentError::Pin { path, source })?;
    T::try_from(map).map_err(map_error(name))
}

/// The fence object bound to the maps already pinned in `dir`. Rare (an agent that died while
/// putting a fence up), so it pays for a loader of its own rather than giving the shared one
/// pin paths every later load would inherit.
fn load_pinned(dir: &Path) -> Result<Ebpf> {
    let (config, allow, drops) = (dir.join(CONFIG.1), dir.join(ALLOW.1), dir.join(DROPS.1));
    Ok(EbpfLoader::new()
        // No CO-RE in these programs: they read only the packet.
        .btf(None)
        .map_pin_path(CONFIG.0, config.as_path())
        .map_pin_path(ALLOW.0, allow.as_path())
        .map_pin_path(DROPS.0, drops.as_path())
        .load(OBJECT)?)
}

/// Loads (verifies) both programs into the kernel, attaching neither.
fn load_programs(ebpf: &mut Ebpf) -> Result<()> {
    for (name, _, _) in PROGRAMS {
        let program: &mut CgroupSkb = ebpf
            .program_mut(name)
            .ok_or(AgentError::MissingFromObject(name))?
            .try_into()
            .map_err(|source| AgentError::Program { name, source })?;
        program
            .load()
            .map_err(|source| AgentError::Program { name, source })?;
    }
    Ok(())
}

/// Attaches each program whose link is not pinned in `dir` yet, and pins its link.
fn attach_missing(ebpf: &mut Ebpf, dir: &Path, cgroup: &Path) -> Result<()> {
    let cgroup_dir = File::open(cgroup).map_err(io("opening the cgroup", cgroup))?;
    for (name, attach_type, pin) in PROGRAMS {
        let path = dir.join(pin);
        if path.exists() {
            continue;
        }
        let err = |source| AgentError::Program { name, source };
        let program: &mut CgroupSkb = ebpf
            .program_mut(name)
            .ok_or(AgentError::MissingFromObject(name))?
            .try_into()
            .map_err(err)?;
        let id = program
            // A link: the kernel lets any number of links share the cgroup (every fence on the
            // host, and whatever else attaches there), and takes no other mode with one.
            .attach(&cgroup_dir, attach_type, CgroupAttachMode::Single)
            .map_err(err)?;
        let link = FdLink::try_from(program.take_link(id).map_err(err)?)
            .map_err(|source| AgentError::Link { name, source })?;
        link.pin(&path)
            .map_err(|source| AgentError::Pin { path, source })?;
    }
    Ok(())
}
