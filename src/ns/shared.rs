//! What the shards of one server share at the namespace layer ([`ServerShared`]): the
//! namespace registry (names and dynamic patterns), the transport's shared state and the
//! mesh. The `Server` handle above wraps it.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use ahash::AHashMap;
use serde_json::Value;

use crate::config::Config;
use crate::ns::recovery::RecoveryShared;
use crate::ns::watch::Watch;
use crate::ns::NamespaceInner;
use crate::shard::{self, ShardMesh};
use crate::transport;
use crate::transport::outbox::Encoding;

/// What the shards of one server share at the namespace layer: the namespace registry, the
/// transport's shared state (configuration, counters) and the mesh. Read-mostly: the
/// registry is read on each connect (never per message); the mesh is set once when the
/// server starts.
pub(crate) struct ServerShared {
    /// The transport layer's shared state: the configuration and the connection counts.
    pub transport: Arc<transport::local::Shared>,
    namespaces: RwLock<AHashMap<String, Arc<NamespaceInner>>>,
    /// Dynamic namespace patterns, tried in order for unknown names.
    dynamic: RwLock<Vec<(DynamicPredicate, Arc<NamespaceInner>)>>,
    /// The main namespace `/`, which always exists, as in socket.io.
    root: Arc<NamespaceInner>,
    mesh: OnceLock<Arc<ShardMesh>>,
    /// What the layers above keep per server (the adapter), by type, set once.
    upper: OnceLock<Box<dyn Any + Send + Sync>>,
    /// Told the name of each namespace created after they are added (a cluster adapter
    /// subscribes to its channels; the admin UI watches its sockets).
    on_new_namespace: RwLock<Vec<NamespaceHook>>,
    /// The admin UI's development mode, once instrumented; told of sockets only while
    /// `watching` (an admin is connected somewhere in the cluster).
    watch: OnceLock<Arc<dyn Watch>>,
    watching: Arc<AtomicBool>,
    /// Connection state recovery's shared state, when it is on.
    recovery: Option<RecoveryShared>,
    /// Broadcasts issued from threads that are not shards of this server (those issued on
    /// a shard are counted there, in a plain cell).
    broadcasts_off_shard: AtomicU64,
}

/// Told of a namespace created (`true`) or removed (`false`, a dynamic pattern's child
/// emptied with `cleanup_empty_child_namespaces`).
pub(crate) type NamespaceHook = Box<dyn Fn(&Arc<NamespaceInner>, bool) + Send + Sync>;

type DynamicPredicate = Arc<dyn Fn(&str, &Value) -> bool + Send + Sync>;

impl ServerShared {
    /// A server's shared state with only the main namespace `/`.
    pub(crate) fn new(config: Config) -> ServerShared {
        let watching = Arc::new(AtomicBool::new(false));
        let root = Arc::new(NamespaceInner::new(Arc::from("/"), None, watching.clone()));
        let mut namespaces = AHashMap::new();
        namespaces.insert("/".to_owned(), root.clone());
        let recovery = RecoveryShared::new(&config);
        ServerShared {
            recovery,
            transport: Arc::new(transport::local::Shared::new(config)),
            namespaces: RwLock::new(namespaces),
            dynamic: RwLock::new(Vec::new()),
            root,
            mesh: OnceLock::new(),
            upper: OnceLock::new(),
            on_new_namespace: RwLock::new(Vec::new()),
            watch: OnceLock::new(),
            watching,
            broadcasts_off_shard: AtomicU64::new(0),
        }
    }

    /// Counts one broadcast issued here: on the shard that issues it, or, from another
    /// thread, in the server's one atomic (not on the data path of the shards).
    pub(crate) fn count_broadcast(&self) {
        match self.mesh().and_then(shard::current) {
            Some(ctx) => {
                let c = &ctx.ns().counters.broadcasts;
                c.set(c.get() + 1);
            }
            None => drop(self.broadcasts_off_shard.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// The broadcasts issued from threads that are not shards (see [`Self::count_broadcast`]).
    pub(crate) fn broadcasts_off_shard(&self) -> u64 {
        self.broadcasts_off_shard.load(Ordering::Relaxed)
    }

    /// Keeps the layers above's per-server state; the first value set stays.
    pub(crate) fn set_upper(&self, value: Box<dyn Any + Send + Sync>) {
        let _ = self.upper.set(value);
    }

    /// The layers above's per-server state, once set.
    pub(crate) fn upper(&self) -> Option<&(dyn Any + Send + Sync)> {
        self.upper.get().map(|b| &**b)
    }

    /// The namespace `name` (a `/` is put in front when missing), created on first use.
    pub(crate) fn of(&self, name: &str) -> Arc<NamespaceInner> {
        let name = if name.starts_with('/') { name.to_owned() } else { format!("/{name}") };
        let mut map = self.namespaces.write().unwrap_or_else(|p| p.into_inner());
        if let Some(ns) = map.get(&name) {
            return ns.clone();
        }
        let ns =
            Arc::new(NamespaceInner::new(Arc::from(name.as_str()), None, self.watching.clone()));
        map.insert(name, ns.clone());
        drop(map);
        self.created(&ns);
        ns
    }

    /// Adds what is told of each namespace created from now on (on the creating thread,
    /// before any socket is in it); returns the names of those that exist already
    /// (patterns excluded).
    /// Once the server stopped: drops every namespace's handlers and the namespace hooks,
    /// which may hold the server itself (see [`NamespaceInner::release_handlers`]).
    pub(crate) fn release_handlers(&self) {
        let all: Vec<Arc<NamespaceInner>> = {
            let n = self.namespaces.read().unwrap_or_else(|p| p.into_inner());
            let d = self.dynamic.read().unwrap_or_else(|p| p.into_inner());
            n.values().cloned().chain(d.iter().map(|(_, ns)| ns.clone())).collect()
        };
        for ns in all {
            ns.release_handlers();
        }
        std::mem::take(&mut *self.dynamic.write().unwrap_or_else(|p| p.into_inner()));
        std::mem::take(&mut *self.on_new_namespace.write().unwrap_or_else(|p| p.into_inner()));
    }

    pub(crate) fn watch_namespaces(&self, hook: NamespaceHook) -> Vec<Arc<str>> {
        // Held while the registry is read: a namespace created meanwhile is in the list
        // returned or told to the hook (at worst both; the hooks tolerate a repeat).
        let mut hooks = self.on_new_namespace.write().unwrap_or_else(|p| p.into_inner());
        hooks.push(hook);
        let map = self.namespaces.read().unwrap_or_else(|p| p.into_inner());
        map.values().map(|ns| ns.name.clone()).collect()
    }

    fn created(&self, ns: &Arc<NamespaceInner>) {
        let hooks = self.on_new_namespace.read().unwrap_or_else(|p| p.into_inner());
        for hook in hooks.iter() {
            hook(ns, true);
        }
    }

    /// A socket of `ns` connected (on any shard). A dynamic pattern's child removed
    /// meanwhile (its last socket left while this one's middlewares ran) is registered again,
    /// unless a new one of the same name took its place.
    pub(crate) fn socket_added(&self, ns: &Arc<NamespaceInner>) {
        if !ns.is_child() {
            return;
        }
        ns.sockets.fetch_add(1, Ordering::SeqCst);
        if !ns.removed.load(Ordering::SeqCst) {
            return;
        }
        let mut map = self.namespaces.write().unwrap_or_else(|p| p.into_inner());
        if !ns.removed.load(Ordering::SeqCst) || map.contains_key(&*ns.name) {
            return;
        }
        map.insert(ns.name.to_string(), ns.clone());
        ns.removed.store(false, Ordering::SeqCst);
        drop(map);
        if let Some(parent) = &ns.parent {
            parent.add_child(ns.clone());
        }
        self.created(ns);
    }

    /// A socket of `ns` left. With `cleanup_empty_child_namespaces`, a dynamic pattern's
    /// child that has no socket left on any shard is taken out of the registry (a new
    /// connection to that name makes a new one), as socket.io does.
    pub(crate) fn socket_removed(&self, ns: &Arc<NamespaceInner>) {
        if !ns.is_child() || ns.sockets.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        if !self.config().cleanup_empty_child_namespaces {
            return;
        }
        let mut map = self.namespaces.write().unwrap_or_else(|p| p.into_inner());
        // Under the lock: a socket counted meanwhile keeps it.
        if ns.sockets.load(Ordering::SeqCst) != 0
            || !map.get(&*ns.name).is_some_and(|m| Arc::ptr_eq(m, ns))
        {
            return;
        }
        map.remove(&*ns.name);
        ns.removed.store(true, Ordering::SeqCst);
        drop(map);
        if let Some(parent) = &ns.parent {
            parent.remove_child(ns);
        }
        let hooks = self.on_new_namespace.read().unwrap_or_else(|p| p.into_inner());
        for hook in hooks.iter() {
            hook(ns, false);
        }
    }

    /// Sets the watcher of every socket (the admin UI's development mode); the first stays.
    pub(crate) fn set_watch(&self, watch: Arc<dyn Watch>) {
        let _ = self.watch.set(watch);
    }

    /// Turns the watcher on (an admin is connected somewhere) or off.
    pub(crate) fn set_watching(&self, on: bool) {
        self.watching.store(on, Ordering::Relaxed);
    }

    /// The watcher, on or off (told of connects and upgrades always, to keep what it
    /// records of each socket current).
    pub(crate) fn watcher(&self) -> Option<&Arc<dyn Watch>> {
        self.watch.get()
    }

    /// The names of the namespaces (a dynamic pattern's children included, patterns not).
    pub(crate) fn namespace_names(&self) -> Vec<Arc<str>> {
        let map = self.namespaces.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<Arc<str>> = map.values().map(|ns| ns.name.clone()).collect();
        names.sort();
        names
    }

    /// The watcher, while it is on: one relaxed load when it is not.
    #[inline]
    pub(crate) fn watch(&self) -> Option<&Arc<dyn Watch>> {
        if !self.watching.load(Ordering::Relaxed) {
            return None;
        }
        self.watch.get()
    }

    /// Adds a namespace pattern (tried in order for unknown names); returns the namespace
    /// whose handlers the namespaces it creates use.
    pub(crate) fn add_pattern(&self, accept: DynamicPredicate) -> Arc<NamespaceInner> {
        let mut dynamic = self.dynamic.write().unwrap_or_else(|p| p.into_inner());
        let label = format!("dynamic#{}", dynamic.len());
        let inner =
            Arc::new(NamespaceInner::pattern(Arc::from(label.as_str()), self.watching.clone()));
        dynamic.push((accept, inner.clone()));
        inner
    }

    /// The main namespace `/`.
    pub(crate) fn root(&self) -> &Arc<NamespaceInner> {
        &self.root
    }

    /// Sets the mesh once the server starts; false when it was already set (listening).
    pub(crate) fn set_mesh(&self, mesh: Arc<ShardMesh>) -> bool {
        self.mesh.set(mesh).is_ok()
    }

    /// Connection state recovery, when it is on.
    pub(crate) fn recovery(&self) -> Option<&RecoveryShared> {
        self.recovery.as_ref()
    }

    /// The server's configuration.
    pub(crate) fn config(&self) -> &Config {
        &self.transport.config
    }

    /// How packets are encoded for this server's transports.
    pub(crate) fn encoding(&self, compress: bool) -> Encoding {
        Encoding {
            deflate: compress && self.config().per_message_deflate,
            threshold: self.config().deflate_threshold,
            msgpack: self.config().parser == crate::config::Parser::MsgPack,
            compress,
        }
    }

    pub(crate) fn mesh(&self) -> Option<&Arc<ShardMesh>> {
        self.mesh.get()
    }

    /// The namespace `name` when it exists (no pattern is tried).
    pub(crate) fn existing(&self, name: &str) -> Option<Arc<NamespaceInner>> {
        self.namespaces.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// The namespace a client asks to join: a registered one, or one a dynamic pattern
    /// accepts (created on this first connect, then registered like any other).
    pub(crate) fn namespace_for(&self, name: &str, auth: &Value) -> Option<Arc<NamespaceInner>> {
        if let Some(ns) = self.namespaces.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Some(ns.clone());
        }
        let parent = {
            let dynamic = self.dynamic.read().unwrap_or_else(|p| p.into_inner());
            dynamic.iter().find(|(pred, _)| pred(name, auth)).map(|(_, parent)| parent.clone())?
        };
        let mut map = self.namespaces.write().unwrap_or_else(|p| p.into_inner());
        // Another shard may have created it meanwhile.
        if let Some(ns) = map.get(name) {
            return Some(ns.clone());
        }
        let child = Arc::new(NamespaceInner::new(
            Arc::from(name),
            Some(parent.clone()),
            self.watching.clone(),
        ));
        map.insert(name.to_owned(), child.clone());
        drop(map);
        parent.add_child(child.clone());
        self.created(&child);
        Some(child)
    }
}
