//! The writes the scenarios count: keys written (optionally acknowledged by replicas) and
//! counted again after a fault.
use anyhow::{Result, bail};

/// Writes keys `{prefix}:0..n`; with `acked_by` > 0 each write waits (WAIT, 2 s) for that many
/// replicas and fails if fewer acknowledge it.
pub fn write_keys(c: &mut redis::Connection, prefix: &str, n: usize, acked_by: i64) -> Result<()> {
    for i in 0..n {
        let _: () = redis::cmd("SET")
            .arg(format!("{prefix}:{i}"))
            .arg(i)
            .query(c)?;
        if acked_by > 0 {
            let acks: i64 = redis::cmd("WAIT").arg(acked_by).arg(2000).query(c)?;
            if acks < acked_by {
                bail!("write {prefix}:{i} was acknowledged by {acks} replicas, not {acked_by}");
            }
        }
    }
    Ok(())
}

/// How many of the keys `{prefix}:0..n` exist.
pub fn count_keys(c: &mut redis::Connection, prefix: &str, n: usize) -> Result<usize> {
    let mut found = 0;
    for i in 0..n {
        found += redis::cmd("EXISTS")
            .arg(format!("{prefix}:{i}"))
            .query::<usize>(c)?;
    }
    Ok(found)
}
