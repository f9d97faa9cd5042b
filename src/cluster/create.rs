//! Creating an object when the answer may be lost: a create (POST) whose
//! connection broke after it was sent may or may not have taken effect, so
//! berth's client never repeats it on its own ([`retry`](super::retry)).
//! [`create`] sends it again, and an `AlreadyExists` answer after such a
//! break is taken as its own creation when the object there carries every
//! label and annotation berth sent.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use kube::api::PostParams;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::retry::{self, BUDGET};

/// The delay before sending a create again.
const AGAIN_AFTER: Duration = Duration::from_secs(1);

/// Create `object` through `api`, sending it again after a broken
/// connection (for up to [`BUDGET`]); the object as created.
pub async fn create<K>(api: &Api<K>, object: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    let started = Instant::now();
    let mut broken = false;
    loop {
        match api.create(&PostParams::default(), object).await {
            Ok(created) => return Ok(created),
            Err(kube::Error::Api(status)) if status.is_already_exists() && broken => {
                let there = api.get(&object.name_any()).await?;
                if carries(there.labels(), object.labels())
                    && carries(there.annotations(), object.annotations())
                {
                    return Ok(there);
                }
                return Err(kube::Error::Api(status));
            }
            Err(e) if retry::transient(&e) && started.elapsed() < BUDGET => {
                tracing::debug!("creating {} again: {e}", object.name_any());
                broken = true;
                tokio::time::sleep(AGAIN_AFTER).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether `there` holds every entry of `sent`.
fn carries(there: &BTreeMap<String, String>, sent: &BTreeMap<String, String>) -> bool {
    sent.iter().all(|(k, v)| there.get(k) == Some(v))
}
