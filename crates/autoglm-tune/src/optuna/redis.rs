//! Optuna's `JournalRedisBackend` (feature `redis`): line `n` of the journal is the
//! string key `{prefix}:log:{n}` (JSON with Python's default separators) and
//! `{prefix}:log_number` the last line's number (−1 before the first), so Python
//! Optuna workers and ours share one study through one Redis server. An append is one
//! Lua script that increments the counter and sets the line atomically, as Optuna's
//! is; ours also records the operation's id (`{prefix}:op:{id}`, kept a day) and
//! returns the earlier line's number when it sees the id again, so retrying an append
//! whose answer was lost never writes it twice. Transient failures (a connection
//! refused, reset or timed out) are retried with exponential backoff on a fresh
//! connection; `{prefix}:snapshot` (a Python pickle) is never read or written.

use std::time::{Duration, Instant};

use super::pyjson::{PyJson, Separators};
use super::{Backend, BadLine};

/// Optuna's append, plus the operation id check.
const APPEND: &str = r"
local done = redis.call('get', ARGV[1] .. ':op:' .. ARGV[3])
if done then return tonumber(done) end
redis.call('setnx', ARGV[1] .. ':log_number', -1)
local i = redis.call('incr', ARGV[1] .. ':log_number')
redis.call('set', string.format('%s:log:%d', ARGV[1], i), ARGV[2])
redis.call('set', ARGV[1] .. ':op:' .. ARGV[3], i, 'EX', 86400)
return i
";

/// Lines fetched per round trip when reading.
const BATCH: u64 = 512;

/// A journal on a Redis server.
pub struct JournalRedis {
    url: String,
    prefix: String,
    client: redis::Client,
    conn: Option<redis::Connection>,
    /// How long transient failures are retried before giving up.
    patience: Duration,
}

impl std::fmt::Debug for JournalRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalRedis")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl JournalRedis {
    /// The journal under `prefix` (Optuna's default is the empty string) on the
    /// server at `url` (`redis://HOST:PORT/DB`); connects now.
    ///
    /// # Errors
    /// The URL is not a Redis URL, or the server cannot be reached within the
    /// retry patience (60 s).
    pub fn open(url: &str, prefix: &str) -> Result<JournalRedis, String> {
        let client = redis::Client::open(url).map_err(|e| format!("{url}: {e}"))?;
        let mut j = JournalRedis {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            client,
            conn: None,
            patience: Duration::from_secs(60),
        };
        j.retrying(|c| redis::cmd("PING").query::<String>(c))?;
        Ok(j)
    }

    /// How long transient failures are retried (default 60 s).
    pub fn set_patience(&mut self, patience: Duration) {
        self.patience = patience;
    }

    /// Runs `f` on a connection, reconnecting and retrying with backoff (0.1 s
    /// doubling to 5 s) while the failure is transient and patience lasts.
    fn retrying<T>(
        &mut self,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, String> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            let attempt = match self.conn.as_mut() {
                Some(c) => f(c),
                None => self
                    .client
                    .get_connection_with_timeout(Duration::from_secs(5))
                    .and_then(|mut c| {
                        c.set_read_timeout(Some(Duration::from_secs(30)))?;
                        c.set_write_timeout(Some(Duration::from_secs(30)))?;
                        let r = f(&mut c);
                        self.conn = Some(c);
                        r
                    }),
            };
            match attempt {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let transient = e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_connection_refusal()
                        || e.is_timeout();
                    if !transient || started.elapsed() + wait > self.patience {
                        return Err(format!("{}: {e}", self.url));
                    }
                    self.conn = None;
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Appends one line as the operation `id` and returns its number; appending
    /// the same `id` again (a retry after an answer was lost) writes nothing and
    /// returns the first number.
    ///
    /// # Errors
    /// The server cannot be reached within the patience, or refuses the script.
    pub fn append_once(&mut self, log: &PyJson, id: &str) -> Result<u64, String> {
        let text = log.dumps(Separators::Default);
        let prefix = self.prefix.clone();
        let n = self.retrying(|c| {
            redis::cmd("EVAL")
                .arg(APPEND)
                .arg(0)
                .arg(&prefix)
                .arg(&text)
                .arg(id)
                .query::<i64>(c)
        })?;
        Ok(n as u64)
    }

    fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.prefix)
    }
}

impl Backend for JournalRedis {
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            self.url.clone()
        } else {
            format!("{} (prefix '{}')", self.url, self.prefix)
        }
    }

    fn read_logs(&mut self, from: u64) -> Result<(Vec<PyJson>, Option<BadLine>), String> {
        let counter = self.key("log_number");
        let last: Option<i64> = self.retrying(|c| redis::cmd("GET").arg(&counter).query(c))?;
        let Some(last) = last.filter(|&l| l >= 0) else {
            return Ok((Vec::new(), None));
        };
        let last = last as u64;
        let mut logs = Vec::new();
        let mut n = from;
        while n <= last {
            let keys: Vec<String> = (n..=last.min(n + BATCH - 1))
                .map(|i| self.key(&format!("log:{i}")))
                .collect();
            let mut values: Vec<Option<String>> =
                self.retrying(|c| redis::cmd("MGET").arg(&keys).query(c))?;
            for (k, v) in keys.iter().zip(values.iter_mut()) {
                // A line numbered but not yet set (a writer between its INCR and SET,
                // which only non-atomic writers leave): wait for it.
                let mut wait = Duration::from_millis(100);
                while v.is_none() {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(10));
                    *v = self.retrying(|c| redis::cmd("GET").arg(k).query(c))?;
                }
                let text = v.as_deref().expect("set above");
                match PyJson::parse(text) {
                    Ok(log) => logs.push(log),
                    // The newest line may be retried next time, as Optuna does;
                    // an older one is an error.
                    Err(_) if n == last => return Ok((logs, None)),
                    Err(reason) => {
                        return Ok((
                            logs,
                            Some(BadLine {
                                log_number: n,
                                reason,
                            }),
                        ))
                    }
                }
                n += 1;
            }
        }
        Ok((logs, None))
    }

    fn reopen(&self) -> Result<Box<dyn Backend>, String> {
        let mut j = JournalRedis::open(&self.url, &self.prefix)?;
        j.patience = self.patience;
        Ok(Box::new(j))
    }

    fn append_logs(&mut self, logs: &[PyJson]) -> Result<(), String> {
        for log in logs {
            self.append_once(log, &super::file::unique())?;
        }
        Ok(())
    }
}
