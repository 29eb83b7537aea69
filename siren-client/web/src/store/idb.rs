//! The page's IndexedDB database `siren`: one object store, `records`, of byte strings under
//! string keys — all the [`super::DeviceStore`] needs.
//!
//! Written on `web-sys` rather than a wrapper crate because a write must be on disk before the
//! session acknowledges what it learned (the `Store` contract): each write is one transaction
//! opened with `durability: "strict"`, awaited until it commits — an option `web-sys` offers
//! only behind its unstable-API flag and the `idb` crate not at all. Requests become futures
//! through promises (their `onsuccess`/`onerror` are the promise's `resolve`/`reject`), so no
//! callback outlives what it settles and dropping a future leaks nothing.

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast as _, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbFactory, IdbKeyRange, IdbObjectStore, IdbOpenDbRequest, IdbRequest};

/// The database's name (one device per browser profile and origin).
pub const DATABASE: &str = "siren";
/// Its version.
const VERSION: u32 = 1;
/// Its one object store.
const RECORDS: &str = "records";

/// An IndexedDB failure, with the browser's words.
#[derive(Debug, thiserror::Error)]
#[error("the browser's storage: {0}")]
pub struct IdbError(String);

impl IdbError {
    fn js(what: &str, value: &JsValue) -> IdbError {
        let detail = value
            .dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .or_else(|| {
                value
                    .dyn_ref::<web_sys::DomException>()
                    .map(|e| e.message())
            })
            .or_else(|| value.as_string())
            .unwrap_or_else(|| "failed".into());
        IdbError(format!("{what}: {detail}"))
    }
}

/// The page's database, open (a handle: clones share the connection).
#[derive(Clone)]
pub struct Idb {
    db: IdbDatabase,
}

fn factory() -> Result<IdbFactory, IdbError> {
    Reflect::get(&js_sys::global(), &JsValue::from_str("indexedDB"))
        .ok()
        .and_then(|f| f.dyn_into::<IdbFactory>().ok())
        .ok_or_else(|| IdbError("this browser offers no IndexedDB".into()))
}

/// Waits for a request; its result, or its error.
async fn settled(request: &IdbRequest, what: &str) -> Result<JsValue, IdbError> {
    let promise = Promise::new(&mut |resolve, reject| {
        request.set_onsuccess(Some(&resolve));
        request.set_onerror(Some(&reject));
    });
    let outcome = JsFuture::from(promise).await;
    request.set_onsuccess(None);
    request.set_onerror(None);
    match outcome {
        Ok(_) => request.result().map_err(|e| IdbError::js(what, &e)),
        Err(_) => {
            let error = request.error().ok().flatten().map(JsValue::from);
            Err(IdbError::js(what, &error.unwrap_or(JsValue::UNDEFINED)))
        }
    }
}

impl Idb {
    /// Opens (creating on first use) the page's database.
    pub async fn open() -> Result<Idb, IdbError> {
        let request: IdbOpenDbRequest = factory()?
            .open_with_u32(DATABASE, VERSION)
            .map_err(|e| IdbError::js("open", &e))?;
        // Version 1 is the first: the upgrade creates the object store.
        let upgrade = wasm_bindgen::closure::Closure::<dyn FnMut()>::new({
            let request = request.clone();
            move || {
                if let Ok(db) = request.result().and_then(|db| db.dyn_into::<IdbDatabase>())
                    && !db.object_store_names().contains(RECORDS)
                {
                    // A failure here aborts the upgrade, and the open request reports it.
                    let _ = db.create_object_store(RECORDS);
                }
            }
        });
        request.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        let opened = settled(&request, "open").await;
        request.set_onupgradeneeded(None);
        drop(upgrade);
        let db = opened?
            .dyn_into::<IdbDatabase>()
            .map_err(|e| IdbError::js("open", &e))?;
        Ok(Idb { db })
    }

    fn store(&self, mode: &str) -> Result<(web_sys::IdbTransaction, IdbObjectStore), IdbError> {
        // `transaction(names, mode, {durability})`, called as JavaScript would (see the module's
        // documentation for why).
        let options = Object::new();
        if mode == "readwrite" {
            let _ = Reflect::set(&options, &"durability".into(), &"strict".into());
        }
        let transaction = Reflect::get(&self.db, &"transaction".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .ok_or_else(|| IdbError("IndexedDB has no transactions".into()))?
            .call3(
                &self.db,
                &JsValue::from_str(RECORDS),
                &JsValue::from_str(mode),
                &options,
            )
            .map_err(|e| IdbError::js("transaction", &e))?
            .dyn_into::<web_sys::IdbTransaction>()
            .map_err(|e| IdbError::js("transaction", &e))?;
        let store = transaction
            .object_store(RECORDS)
            .map_err(|e| IdbError::js("transaction", &e))?;
        Ok((transaction, store))
    }

    /// The bytes stored under `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, IdbError> {
        let (_transaction, store) = self.store("readonly")?;
        let request = store
            .get(&JsValue::from_str(key))
            .map_err(|e| IdbError::js("read", &e))?;
        let value = settled(&request, "read").await?;
        if value.is_undefined() {
            return Ok(None);
        }
        bytes(&value).map(Some)
    }

    /// The keys from `lower` (included) to `upper` (excluded), in order.
    pub async fn keys(&self, lower: &str, upper: &str) -> Result<Vec<String>, IdbError> {
        let (_transaction, store) = self.store("readonly")?;
        let request = store
            .get_all_keys_with_key(&range(lower, upper)?.into())
            .map_err(|e| IdbError::js("read", &e))?;
        let keys = settled(&request, "read").await?;
        Array::from(&keys)
            .iter()
            .map(|k| {
                k.as_string()
                    .ok_or_else(|| IdbError("a stored key is not a string".into()))
            })
            .collect()
    }

    /// The records from `lower` (included) to `upper` (excluded), in key order, read in one
    /// transaction.
    pub async fn entries(
        &self,
        lower: &str,
        upper: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, IdbError> {
        let (_transaction, store) = self.store("readonly")?;
        let range: JsValue = range(lower, upper)?.into();
        let keys = store
            .get_all_keys_with_key(&range)
            .map_err(|e| IdbError::js("read", &e))?;
        let values = store
            .get_all_with_key(&range)
            .map_err(|e| IdbError::js("read", &e))?;
        let (keys, values) = (
            settled(&keys, "read").await?,
            settled(&values, "read").await?,
        );
        let (keys, values) = (Array::from(&keys), Array::from(&values));
        if keys.length() != values.length() {
            return Err(IdbError("a read changed under us".into()));
        }
        keys.iter()
            .zip(values.iter())
            .map(|(k, v)| {
                let k = k
                    .as_string()
                    .ok_or_else(|| IdbError("a stored key is not a string".into()))?;
                Ok((k, bytes(&v)?))
            })
            .collect()
    }

    /// Stores each `(key, bytes)` in one transaction, and returns once it is committed to disk.
    pub async fn put(&self, entries: &[(String, Vec<u8>)]) -> Result<(), IdbError> {
        let (transaction, store) = self.store("readwrite")?;
        let done = Promise::new(&mut |resolve, reject| {
            transaction.set_oncomplete(Some(&resolve));
            transaction.set_onerror(Some(&reject));
            transaction.set_onabort(Some(&reject));
        });
        for (key, value) in entries {
            let value = Uint8Array::from(value.as_slice());
            if let Err(e) = store.put_with_key(&value, &JsValue::from_str(key)) {
                let _ = transaction.abort();
                return Err(IdbError::js("write", &e));
            }
        }
        let outcome = JsFuture::from(done).await;
        transaction.set_oncomplete(None);
        transaction.set_onerror(None);
        transaction.set_onabort(None);
        outcome.map(|_| ()).map_err(|_| {
            let error = transaction.error().map(JsValue::from);
            IdbError::js("write", &error.unwrap_or(JsValue::UNDEFINED))
        })
    }
}

/// The keys from `lower` (included) to `upper` (excluded).
fn range(lower: &str, upper: &str) -> Result<IdbKeyRange, IdbError> {
    IdbKeyRange::bound_with_lower_open_and_upper_open(
        &JsValue::from_str(lower),
        &JsValue::from_str(upper),
        false,
        true,
    )
    .map_err(|e| IdbError::js("read", &e))
}

/// A stored value's bytes.
fn bytes(value: &JsValue) -> Result<Vec<u8>, IdbError> {
    value
        .dyn_ref::<Uint8Array>()
        .map(Uint8Array::to_vec)
        .ok_or_else(|| IdbError("a stored record is not bytes".into()))
}
