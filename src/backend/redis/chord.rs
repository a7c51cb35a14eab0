//! Chords on Redis, joined as Celery 5.7's Redis backend joins them (docs/wire-protocol.md
//! §2.4), so that Python and Rust workers can share one chord:
//!
//! - the producer of a chord writes its size to `celery-taskset-meta-<group>.s` (and
//!   clears a finished chord's `.c`) before it publishes the header;
//! - each header task, once its own result is stored, adds `[1, id, state, result]` to the
//!   sorted set `.j` (score: its `group_index`), unless `.d` shows that this id and index
//!   were already counted (a redelivered task counts once); the same script compares the
//!   count with `.s` + `.t` and, when the chord is complete, takes the claim `.c` (`SET NX`
//!   with a random token): the worker holding it, and only that one, calls the body;
//! - the claim holder reads `.j` in score order, extends its claim, publishes the body (or
//!   fails it), then deletes `.j .t .s .d` and leaves `.c = "done"` so that late duplicates
//!   change nothing.
//!
//! The scripts below are celeriac's own, with the same keys, arguments and answers as
//! Celery's, so either kind of worker may be the one that completes a chord.

use actix::prelude::*;
use redis::Script;

use super::error::RedisBackendError;
use super::store::RedisStore;

/// The prefix of group keys.
pub const GROUP_KEY_PREFIX: &str = "celery-taskset-meta-";

/// How long a claim holds before another worker may take it over (Celery: twice its
/// 5-second default join timeout).
const CLAIM_SECONDS: u64 = 10;

/// How long the "done" marker keeps late duplicates out (Celery: 300 s).
const DONE_SECONDS: u64 = 300;

/// `celery-taskset-meta-<group_id><suffix>`.
pub fn group_key(group_id: &str, suffix: &str) -> String {
    format!("{GROUP_KEY_PREFIX}{group_id}{suffix}")
}

/// Counts one header result and, when that completes the chord, claims its body.
/// KEYS: .j .t .s .d group .c; ARGV: task id, entry, ordered ("1"), score, expiry of the
/// chord keys, expiry of the group key, claim seconds, claim token.
/// Answers {count (-1: chord already done), total diff, size, claimed (1/0)}.
const PART_RETURN: &str = r"
local j, t, s, d, g, c = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
if redis.call('GET', c) == 'done' then
  return {-1, 0, 0, 0}
end
local counted_as = ARGV[1] .. ':' .. ARGV[4]
if redis.call('SISMEMBER', d, counted_as) == 0 then
  if ARGV[3] == '1' then
    redis.call('ZADD', j, ARGV[4], ARGV[2])
  else
    redis.call('RPUSH', j, ARGV[2])
  end
  redis.call('SADD', d, counted_as)
end
local count
if ARGV[3] == '1' then
  count = redis.call('ZCOUNT', j, '-inf', '+inf')
else
  count = redis.call('LLEN', j)
end
local expiry, group_expiry = tonumber(ARGV[5]), tonumber(ARGV[6])
if expiry > 0 then
  redis.call('EXPIRE', j, expiry)
  redis.call('EXPIRE', t, expiry)
  redis.call('EXPIRE', s, expiry)
  redis.call('EXPIRE', d, expiry)
  if group_expiry > 0 then
    redis.call('EXPIRE', g, group_expiry)
  end
end
local diff = redis.call('GET', t)
local size = redis.call('GET', s)
local claimed = 0
if size and count == tonumber(size) + tonumber(diff or 0) then
  if redis.call('SET', c, ARGV[8], 'NX', 'EX', tonumber(ARGV[7])) then
    claimed = 1
  end
end
return {count, diff, size, claimed}
";

/// Keeps (or takes back, while the chord's data is still there) the claim.
/// KEYS: .c .s; ARGV: token, seconds. Answers 1 when the claim is this token's.
const EXTEND_CLAIM: &str = r"
local c, s = KEYS[1], KEYS[2]
local holder = redis.call('GET', c)
if holder == ARGV[1] then
  return redis.call('EXPIRE', c, tonumber(ARGV[2]))
end
if not holder and redis.call('EXISTS', s) == 1 then
  if redis.call('SET', c, ARGV[1], 'EX', tonumber(ARGV[2]), 'NX') then
    return 1
  end
end
return 0
";

/// Deletes the chord's data and marks it done, if the claim is still this token's.
/// KEYS: .c .j .t .s .d; ARGV: token, seconds of the done marker.
const FINISH: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
if tonumber(ARGV[2]) > 0 then
  redis.call('SET', KEYS[1], 'done', 'EX', tonumber(ARGV[2]))
end
return 1
";

/// The scripts, their SHA1 computed once (they are run by `EVALSHA`, loaded on first use).
static SCRIPTS: std::sync::LazyLock<[Script; 3]> = std::sync::LazyLock::new(|| {
    [
        Script::new(PART_RETURN),
        Script::new(EXTEND_CLAIM),
        Script::new(FINISH),
    ]
});

/// Records a chord's size before its header is published (and forgets that a chord with
/// the same group id was done: a frozen chord applied again is a new run).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), RedisBackendError>")]
pub struct SetChordSize {
    /// The header's group id.
    pub group_id: String,
    /// How many header results complete it.
    pub size: usize,
}

/// Counts a header task's result (`entry` = `[1, id, state, result]` as JSON).
#[derive(Debug, Message)]
#[rtype(result = "Result<ChordJoin, RedisBackendError>")]
pub struct ChordPartReturn {
    /// The header's group id.
    pub group_id: String,
    /// The header task.
    pub task_id: String,
    /// Its place in the header (`None`: after the others).
    pub group_index: Option<i64>,
    /// The entry, as JSON.
    pub entry: String,
}

/// What counting a header result found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChordJoin {
    /// Other results are still missing (or another worker holds the claim).
    Waiting,
    /// The chord was already done: this result came late (a redelivery).
    AlreadyDone,
    /// The chord is complete and this worker holds the claim: `entries` are the header's
    /// results in header order; call [`FinishChord`] with `token` once the body is out.
    Complete {
        /// The claim token.
        token: String,
        /// The entries as JSON, in header order.
        entries: Vec<Vec<u8>>,
    },
    /// The chord is complete but the claim was lost before the body went out (it took
    /// longer than the claim lasts): another worker may call the body.
    ClaimLost,
}

/// Deletes a complete chord's data and leaves its "done" marker.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, RedisBackendError>")]
pub struct FinishChord {
    /// The header's group id.
    pub group_id: String,
    /// The claim token [`ChordJoin::Complete`] gave.
    pub token: String,
}

impl Handler<SetChordSize> for RedisStore {
    type Result = ResponseFuture<Result<(), RedisBackendError>>;

    fn handle(&mut self, message: SetChordSize, _: &mut Context<Self>) -> Self::Result {
        let link = self.link();
        Box::pin(async move {
            let operation = format!("recording the size of chord {}", message.group_id);
            let mut connection = link.connection(&operation).await?;
            let mut pipeline = redis::pipe();
            pipeline.del(group_key(&message.group_id, ".c")).ignore();
            // As Celery: `SET ... ex=chord_expires or None` (no TTL when results never expire).
            let size_key = group_key(&message.group_id, ".s");
            match link.config.expires_seconds() {
                Some(seconds) => pipeline.set_ex(size_key, message.size, seconds),
                None => pipeline.set(size_key, message.size),
            };
            pipeline.ignore();
            link.run::<()>(&operation, pipeline.query_async(&mut connection))
                .await
        })
    }
}

impl Handler<ChordPartReturn> for RedisStore {
    type Result = ResponseFuture<Result<ChordJoin, RedisBackendError>>;

    fn handle(&mut self, part: ChordPartReturn, _: &mut Context<Self>) -> Self::Result {
        let link = self.link();
        Box::pin(async move {
            let gid = &part.group_id;
            let operation = format!(
                "joining chord {gid} with the result of task {}",
                part.task_id
            );
            let mut connection = link.connection(&operation).await?;
            let token = uuid::Uuid::new_v4().simple().to_string();
            let score = part
                .group_index
                .map_or_else(|| "+inf".to_string(), |index| index.to_string());
            // 0: no EXPIRE (the script skips it), as Celery passes a falsy `expires`.
            let expires = link.config.expires_seconds().unwrap_or(0);
            let keys = [".j", ".t", ".s", ".d", "", ".c"].map(|suffix| group_key(gid, suffix));
            let mut invocation = SCRIPTS[0].prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            invocation
                .arg(&part.task_id)
                .arg(&part.entry)
                .arg("1")
                .arg(&score)
                .arg(expires)
                .arg(expires)
                .arg(CLAIM_SECONDS)
                .arg(&token);
            let (count, diff, size, claimed): (i64, Option<i64>, Option<i64>, i64) = link
                .run(&operation, invocation.invoke_async(&mut connection))
                .await?;
            if count == -1 {
                return Ok(ChordJoin::AlreadyDone);
            }
            let complete = size.is_some_and(|size| count == size + diff.unwrap_or(0));
            if !complete || claimed != 1 {
                return Ok(ChordJoin::Waiting);
            }
            let entries: Vec<Vec<u8>> = link
                .run(
                    &operation,
                    redis::AsyncCommands::zrange(&mut connection, &keys[0], 0, -1),
                )
                .await?;
            let kept: i64 = link
                .run(
                    &operation,
                    SCRIPTS[1]
                        .key(&keys[5])
                        .key(&keys[2])
                        .arg(&token)
                        .arg(CLAIM_SECONDS * 2)
                        .invoke_async(&mut connection),
                )
                .await?;
            if kept != 1 {
                return Ok(ChordJoin::ClaimLost);
            }
            Ok(ChordJoin::Complete { token, entries })
        })
    }
}

impl Handler<FinishChord> for RedisStore {
    type Result = ResponseFuture<Result<bool, RedisBackendError>>;

    fn handle(&mut self, finish: FinishChord, _: &mut Context<Self>) -> Self::Result {
        let link = self.link();
        Box::pin(async move {
            let gid = &finish.group_id;
            let operation = format!("finishing chord {gid}");
            let mut connection = link.connection(&operation).await?;
            let mut invocation = SCRIPTS[2].prepare_invoke();
            for suffix in [".c", ".j", ".t", ".s", ".d"] {
                invocation.key(group_key(gid, suffix));
            }
            invocation.arg(&finish.token).arg(DONE_SECONDS);
            let finished: i64 = link
                .run(&operation, invocation.invoke_async(&mut connection))
                .await?;
            Ok(finished == 1)
        })
    }
}
