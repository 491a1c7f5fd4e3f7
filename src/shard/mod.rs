//! A shard: one thread, one current-thread tokio runtime, its lanes, and the state it alone
//! owns: the per-shard state of each layer above (the transport's sessions and links, the
//! namespaces' sockets and rooms maps), kept in its context by type.
//!
//! Layer: above the mesh, below everything that runs on a shard; it runs tasks and names
//! none of the layers above.
//!
//! Other threads reach this state only through the mesh ([`submit_to`], broadcasts). The
//! state sits in `RefCell`s behind a thread-local `Rc`: no lock, no sharing. No borrow is
//! held across an `.await` or while a user handler runs.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::mesh::Mesh;

/// Work for a shard, run on it with its context: an accepted connection to serve, a
/// broadcast to deliver, a `submit_to` closure. The layers above build these; the shard
/// runtime only runs them, in the order each lane delivers them.
pub(crate) type Task = Box<dyn FnOnce(&Rc<ShardCtx>) + Send>;

/// A message from one shard (or an outside thread) to a shard, carried by the mesh.
pub(crate) enum ShardMsg {
    /// Run a task on the receiving shard.
    Run(Task),
    /// Stop the shard.
    Shutdown,
}

/// The mesh between the shards of one server.
pub(crate) type ShardMesh = Mesh<ShardMsg>;

/// Everything one shard owns: its id and lanes, and the per-shard state of the layers above
/// (`locals`, one value per type, reached through their typed accessors such as
/// `ctx.transport()`).
pub(crate) struct ShardCtx {
    pub id: usize,
    pub mesh: Arc<ShardMesh>,
    /// The layers' per-shard state, installed before the shard runs anything.
    locals: Vec<Box<dyn Any>>,
    /// Messages for other shards whose lane was full, kept in order and retried.
    overflow: RefCell<Vec<VecDeque<ShardMsg>>>,
    /// When to give freed memory back to the system.
    trim: RefCell<Trim>,
}

thread_local! {
    static CTX: RefCell<Option<Rc<ShardCtx>>> = const { RefCell::new(None) };
}

/// The shard this thread runs, if it is a shard of the server whose mesh is `mesh`.
pub(crate) fn current(mesh: &Arc<ShardMesh>) -> Option<Rc<ShardCtx>> {
    CTX.with(|c| c.borrow().as_ref().filter(|ctx| Arc::ptr_eq(&ctx.mesh, mesh)).cloned())
}

/// Runs `f` on shard `to` of `mesh`'s server: immediately when already there, else by
/// message.
pub(crate) fn submit_to(mesh: &Arc<ShardMesh>, to: usize, f: impl FnOnce() + Send + 'static) {
    match current(mesh) {
        Some(ctx) if ctx.id == to => f(),
        Some(ctx) => ctx.send_to(to, ShardMsg::Run(Box::new(move |_| f()))),
        None => mesh.inject(to, ShardMsg::Run(Box::new(move |_| f()))),
    }
}

impl ShardCtx {
    /// A shard's context with the layers' per-shard state (`locals`, one value per type).
    pub(crate) fn new(id: usize, mesh: Arc<ShardMesh>, locals: Vec<Box<dyn Any>>) -> Self {
        let n = mesh.len();
        ShardCtx {
            id,
            mesh,
            locals,
            trim: RefCell::new(Trim::default()),
            overflow: RefCell::new((0..n).map(|_| VecDeque::new()).collect()),
        }
    }

    /// The per-shard state of type `T` that a layer above installed.
    ///
    /// # Panics
    /// When no `T` was installed: the server installs every layer's state before the shard
    /// runs anything, so this is a bug in the server's set-up, never a runtime condition.
    pub(crate) fn local<T: Any>(&self) -> &T {
        self.locals
            .iter()
            .find_map(|l| l.downcast_ref::<T>())
            .expect("every layer's per-shard state is installed before the shard runs")
    }

    /// Counts sessions as they open and close, giving memory back after many closed.
    pub(crate) fn maybe_trim(&self, sessions: usize) {
        self.trim.borrow_mut().maybe_trim(sessions);
    }

    /// Sends to another shard over this shard's lane, keeping order when the lane is full.
    pub(crate) fn send_to(&self, to: usize, msg: ShardMsg) {
        let mut overflow = self.overflow.borrow_mut();
        let msg = if overflow[to].is_empty() {
            match self.mesh.push(self.id, to, msg) {
                Ok(()) => return,
                Err(msg) => msg,
            }
        } else {
            msg
        };
        overflow[to].push_back(msg);
        // The shard loop retries overflow on its turns; make sure it is not parked.
        self.mesh.wake_self(self.id);
    }

    fn flush_overflow(&self) -> bool {
        let mut overflow = self.overflow.borrow_mut();
        let mut pending = false;
        for (to, q) in overflow.iter_mut().enumerate() {
            while let Some(msg) = q.pop_front() {
                if let Err(msg) = self.mesh.push(self.id, to, msg) {
                    q.push_front(msg);
                    pending = true;
                    break;
                }
            }
        }
        pending
    }

    fn handle(self: &Rc<Self>, msg: ShardMsg) -> bool {
        match msg {
            ShardMsg::Run(task) => task(self),
            ShardMsg::Shutdown => return false,
        }
        true
    }
}

/// Gives memory back to the system after many connections have closed. glibc's malloc
/// keeps what is freed in its arenas, so without this the memory of closed connections is
/// never returned; `malloc_trim` releases it. Checked as sessions open and close; it trims
/// only when the count has fallen by a margin since its high mark: a rare call.
#[derive(Default)]
pub(crate) struct Trim {
    high: usize,
}

impl Trim {
    const MARGIN: usize = 256;

    pub(crate) fn maybe_trim(&mut self, sessions: usize) {
        if sessions > self.high {
            self.high = sessions;
        } else if self.high - sessions >= Self::MARGIN {
            tracing::debug!(from = self.high, to = sessions, "returning freed memory");
            self.high = sessions;
            trim_memory();
        }
    }
}

/// Returns the allocator's free pages to the system (glibc's `malloc_trim`).
pub(crate) fn trim_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only walks the allocator's own free
    // lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the layers above put on each shard. Built into the shard's context on its own
/// thread (the state holds `Rc`s and `RefCell`s, which never leave it).
pub(crate) trait ShardSetup: Send + Sync {
    /// The per-shard state of each layer above (one value per type).
    fn locals(&self, id: usize, mesh: &Arc<ShardMesh>) -> Vec<Box<dyn Any>>;
    /// Starts the shard's own tasks.
    fn start(&self, ctx: &Rc<ShardCtx>);
    /// Winds down what the shard serves once it is told to stop.
    fn stop(&self, ctx: Rc<ShardCtx>) -> Pin<Box<dyn Future<Output = ()>>>;
}

/// Body of a shard thread: runs until told to shut down, then lets `setup` wind down.
/// `ready` hears once whether the shard's runtime could be built: the server accepts
/// nothing before every shard is up (a runtime needs descriptors, which a flood of early
/// connections could otherwise take first).
pub(crate) fn run(
    id: usize,
    mesh: Arc<ShardMesh>,
    setup: Arc<dyn ShardSetup>,
    ready: std::sync::mpsc::Sender<std::io::Result<()>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let ctx = Rc::new(ShardCtx::new(id, mesh.clone(), setup.locals(id, &mesh)));
    CTX.with(|c| *c.borrow_mut() = Some(ctx.clone()));
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        setup.start(&ctx);
        loop {
            let pending = ctx.flush_overflow();
            let mut running = true;
            let n = mesh.drain(id, 256, |m| running &= ctx.handle(m));
            if !running {
                break;
            }
            if n > 0 {
                tokio::task::yield_now().await;
            } else if pending {
                tokio::time::sleep(Duration::from_millis(1)).await;
            } else {
                mesh.park(id).await;
            }
        }
        setup.stop(ctx.clone()).await;
    });
    CTX.with(|c| *c.borrow_mut() = None);
}
