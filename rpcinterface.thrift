/**
 * The one contract between the REST gateway (app/) and the compute side (tserver/ + worker/).
 *
 * Compatibility rule: the names, field ids and field types of the original demo's IDL are kept as
 * they were, and the contract only ever grows by new optional fields, new exceptions and new methods.
 * A client generated from the original IDL still works against this server: Thrift skips fields it
 * does not know.
 *
 * Wire format: TBinaryProtocol on a buffered (unframed) transport, as the original's client speaks it.
 * The server also accepts framed clients on the same port. No multiplexing.
 */
namespace py RPC

/** Smallest number of decimals startCalcPi accepts. */
const i8 MIN_DECIMAL = 1

/** Largest number of decimals any deployment may allow (its own limit, MAX_DECIMAL, is at most this). */
const i8 MAX_SUPPORTED_DECIMAL = 12

/** The limit a deployment allows unless configured otherwise (MAX_DECIMAL). */
const i8 DEFAULT_MAX_DECIMAL = 10

/** Default number of tasks on a page of listTaskPage. */
const i32 DEFAULT_PAGE = 100

/** Largest number of tasks on a page of listTaskPage. */
const i32 MAX_PAGE = 1000

/** calcResult.status: queued, no worker has started it yet. */
const string WAITING = "WAITING"

/** calcResult.status: a worker is computing it. */
const string PROGRESS = "PROGRESS"

/** calcResult.status: done; the digits are proven. */
const string SUCCESS = "SUCCESS"

/** calcResult.status: ended without a result; calcResult.error says why. */
const string FAILURE = "FAILURE"

/** calcResult.status: cancelled (cancelTask, or a start the broker did not confirm in time). */
const string REVOKED = "REVOKED"

/** Every status, in the order a task can go through them. */
const list<string> STATUSES = ["WAITING", "PROGRESS", "SUCCESS", "FAILURE", "REVOKED"]

/** The statuses of a task that has ended: it never changes again. */
const set<string> FINAL_STATUSES = ["SUCCESS", "FAILURE", "REVOKED"]

/** CPU usage of the compute host. */
struct CpuStatus {
  /** Utilisation of all CPUs in percent, 0..100, sampled since the previous call. */
  1: required double percent
  /** Number of logical CPUs. */
  2: required i32 count
  /** Load average over 1, 5 and 15 minutes. */
  3: required list<double> load_average
}

/** Memory of the compute host, in bytes. */
struct MemoryStatus {
  /** Physical memory. */
  1: required i64 total
  /** Memory that can be given to processes without swapping. */
  2: required i64 available
  /** Used share in percent, 0..100. */
  3: required double percent
}

/** The disk that holds the task state folder, in bytes. */
struct DiskStatus {
  /** The state folder the figures are for. */
  1: required string path
  /** Size of the file system. */
  2: required i64 total
  /** Bytes free for an ordinary user. */
  3: required i64 free
  /** Used share in percent, 0..100. */
  4: required double percent
}

/** The state of the compute host (psutil and socket), as shown by GET / of the gateway. */
struct HostStatus {
  /** Host name of the compute host. */
  1: required string hostname
  /** Its address, as the host name resolves. */
  2: required string ip
  /** CPU load. */
  3: required CpuStatus cpu
  /** Memory. */
  4: required MemoryStatus memory
  /** Disk of the state folder. */
  5: required DiskStatus disk
}

/**
 * One pi calculation. Fields 1 to 6 are the original's, unchanged; the rest were added.
 * status is one of WAITING, PROGRESS, SUCCESS, FAILURE, REVOKED (cancelled).
 * Times are ISO 8601 in UTC with an offset.
 */
struct calcResult {
  /** Task id, a UUID. */
  1: required string id
  /** WAITING, PROGRESS, SUCCESS, FAILURE or REVOKED. */
  2: required string status
  /** When the task was queued. */
  3: required string pushqtime
  /** When the worker started it; absent while WAITING. */
  4: optional string starttime
  /** When it finished; absent until SUCCESS or FAILURE. */
  5: optional string stoptime
  /** Partial sum rounded to `decimal` places while PROGRESS; pi rounded to `decimal` places at SUCCESS. */
  6: optional double result
  /** Number of decimals asked for. */
  7: optional i8 decimal
  /** Percentage of the work done, 0..100; never goes backwards; 100 only at SUCCESS. */
  8: optional double progress
  /** At SUCCESS, pi as an exact decimal string with exactly `decimal` places. */
  9: optional string digits
  /** At FAILURE, why. */
  10: optional string error
  /** Number of series terms summed so far. */
  11: optional i64 terms
  /** When the worker computing it last reported (PROGRESS only). */
  12: optional string heartbeat
  /** How many times a worker has started it (more than 1: it was delivered again after a worker died). */
  13: optional i32 attempts
  /** PROGRESS, but no worker has reported for a while: its worker died and no live worker holds it yet. */
  14: optional bool stalled
  /** A calculation split into chunks (run in parallel by every worker): how many have finished. */
  15: optional i32 chunks_done
  /** ... and how many there are (0: not split). */
  16: optional i32 chunks_total
  /** Host names of the workers that computed it (or its chunks). */
  17: optional list<string> hosts
}

/** One page of the task list, newest pushqtime first. */
struct TaskPage {
  /** The tasks on this page. */
  1: required list<calcResult> tasks
  /** How many tasks match the filter in all. */
  2: required i64 total
}

// Every exception is annotated python.immutable = "false": Thrift's Python code makes exceptions
// immutable by default, and a web framework may write to one it handled (Starlette clears the
// __traceback__ of each exception an exception handler turned into a response). An immutable one
// refuses with TypeError after the response went out, which the server then logs as an unhandled error.
// The annotation changes only the generated Python, never the wire; the price is that the generated
// exceptions, like every mutable Thrift struct, cannot be set members or dict keys.

/** The number of decimals is outside the allowed range. */
exception BadDecimal {
  /** Human-readable reason naming the allowed range. */
  1: string message
  /** Smallest allowed number of decimals. */
  2: i8 min_decimal
  /** Largest allowed number of decimals. */
  3: i8 max_decimal
} (python.immutable = "false")

/** The id names no known task (unknown, malformed or hostile). */
exception BadTask {
  /** Human-readable reason. */
  1: string message
} (python.immutable = "false")

/** An argument is outside its documented range. */
exception BadArgument {
  /** Human-readable reason naming the allowed values. */
  1: string message
} (python.immutable = "false")

/** The task has already ended, so it cannot be cancelled. */
exception TaskFinished {
  /** Human-readable reason. */
  1: string message
  /** The status it ended with. */
  2: string status
} (python.immutable = "false")

/** A dependency of the compute side (the broker, the state folder) cannot be used right now. */
exception Unavailable {
  /** Human-readable reason. */
  1: string message
} (python.immutable = "false")

/** The gateway's view of the compute side. */
service RPCcelery {
  /**
   * Queue a Leibniz-series calculation of pi to `decimal` places.
   * Returns the new task's id once the broker has confirmed the message.
   */
  string startCalcPi(1: i8 decimal) throws (1: BadDecimal bd, 2: Unavailable un)

  /**
   * Like startCalcPi, but returns the new task's whole record (status WAITING, pushqtime).
   * The gateway uses this one; startCalcPi stays for clients generated from the original IDL.
   */
  calcResult queueCalcPi(1: i8 decimal) throws (1: BadDecimal bd, 2: Unavailable un)

  /** The state of one task. */
  calcResult getTaskStatus(1: string uuid) throws (1: BadTask bt, 2: Unavailable un)

  /** Every task, newest pushqtime first. */
  list<calcResult> listTasks() throws (1: Unavailable un)

  /**
   * One page of tasks, newest pushqtime first. offset >= 0; 1 <= limit <= 1000;
   * status empty for every task, or one of WAITING, PROGRESS, SUCCESS, FAILURE.
   */
  TaskPage listTaskPage(1: i32 offset, 2: i32 limit, 3: string status) throws (1: BadArgument ba, 2: Unavailable un)

  /**
   * Cancel a waiting or running task: its status becomes REVOKED with a stop time, and a worker
   * computing it stops at its next chunk (well under a second).
   */
  calcResult cancelTask(1: string uuid) throws (1: BadTask bt, 2: TaskFinished tf, 3: Unavailable un)

  /** The state of the compute host. */
  HostStatus getHostStatus() throws (1: Unavailable un)
}
