// The results store: one SQLite file (results/ikv.sqlite by default). WAL journal with
// synchronous=FULL, and each finished cell committed in one transaction with its metrics and
// per-item outcomes, so after any crash a cell is either fully present or absent.
//
// Tables: schema_version(version); runs(id, config_path, config_sha256, started_at, finished_at,
// hostname, cores, cpu_model, ikv_version); cells(key PK, model, quant, kv_bits, intactkv,
// task_kind, task, status 'done', seconds, finished_at); run_cells(run_id, cell_key, ordinal);
// metrics(cell_key, name, value, stderr, n); item_outcomes(cell_key, metric, outcomes BLOB of
// native little-endian doubles); artifacts(key PK, kind, path, sha256, created_at);
// run_options(run_id, name, value).
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;

namespace ikv::exp {

struct Metric {
  std::string name;  // "ppl", "acc", "acc_norm", "kld", ...
  double value = 0;
  double std_err = 0;  // NaN (stored as NULL) when unknown
  int64_t n = 0;       // items (or tokens) the value is over
  bool operator==(const Metric&) const = default;
};

// Per-item outcomes of one metric (0/1 correctness, per-window NLL, ...), in a fixed item order so
// two cells over the same items can be compared pairwise.
struct ItemOutcomes {
  std::string metric;
  std::vector<double> values;
  bool operator==(const ItemOutcomes&) const = default;
};

struct CellRecord {
  std::string key;
  // Labels for reports (the key, not these, identifies the result).
  std::string model, quant;
  int kv_bits = 16;
  std::string intactkv;   // IntactKVSpec::short_label: "none", "bos", "vicuna+cal", ...
  std::string task_kind;  // "ppl" | "qa" | "mmlu" | "mse_sweep" | "kld" | "quant_error"
  std::string task;       // "wikitext2", "arc_easy", "mmlu", ...
  double seconds = 0;
  std::string finished_at;  // UTC "YYYY-MM-DDTHH:MM:SSZ"; put_cell fills it when empty
  std::vector<Metric> metrics;
  std::vector<ItemOutcomes> outcomes;

  const Metric* metric(std::string_view name) const;  // nullptr when absent
  const ItemOutcomes* outcomes_of(std::string_view metric) const;
};

struct RunInfo {
  int64_t id = 0;
  std::string config_path, config_sha256;
  std::string started_at, finished_at;  // finished_at "" for a run that did not finish
  std::string hostname;
  int cores = 0;
  std::string cpu_model, ikv_version;
};

struct ArtifactRecord {
  std::string key;   // quant_artifact_key / intactkv_artifact_key
  std::string kind;  // "quant", "intactkv", ...
  std::string path;
  std::string sha256;
  std::string created_at;  // filled by put_artifact when empty
};

// results_dir + "/ikv.sqlite"; an empty results_dir means "results".
std::string store_path(const std::string& results_dir);

// Where an executor looks up and records shared artifacts: the store, or an MPI worker's list.
class ArtifactIndex {
 public:
  virtual ~ArtifactIndex() = default;
  virtual std::optional<ArtifactRecord> get_artifact(const std::string& key) = 0;
  virtual void put_artifact(const ArtifactRecord& artifact) = 0;
};

// Every method throws ikv::Error "DB_PATH: what: sqlite message" on failure.
class Store : public ArtifactIndex {
 public:
  enum class Access { ReadWrite, ReadOnly };
  // ReadWrite opens or creates the file (and its folder); ReadOnly needs an existing store and
  // never writes. An existing file is checked first (a non-empty SQLite file that passes
  // quick_check and holds ikv's tables, or none) and refused untouched otherwise.
  explicit Store(const std::string& path, Access access = Access::ReadWrite);
  ~Store() override;
  Store(Store&& other) noexcept;
  Store& operator=(Store&& other) noexcept;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& path() const { return path_; }

  // Host information (hostname, cores, cpu model) is collected here.
  int64_t begin_run(const std::string& config_path, const std::string& config_sha256,
                    const std::string& ikv_version);
  void finish_run(int64_t run_id);
  // Records that the run covers these cells (ordinal = position), finished or not, and refreshes
  // the labels of cells already stored (a renamed model shows its new name). One transaction.
  void add_run_cells(int64_t run_id, const std::vector<CellRecord>& cells);
  std::optional<RunInfo> get_run(int64_t run_id);
  // Settings of a run that its reports need and its cells do not carry (e.g. "qa_average").
  void set_run_option(int64_t run_id, const std::string& name, const std::string& value);
  std::map<std::string, std::string> run_options(int64_t run_id);
  std::optional<RunInfo> latest_run();
  std::vector<RunInfo> runs();

  bool has_cell(const std::string& key);
  // Replaces any earlier record of the key; all or nothing.
  void put_cell(const CellRecord& cell);
  std::optional<CellRecord> get_cell(const std::string& key);
  // The run's finished cells with metrics and outcomes, in ordinal order.
  std::vector<CellRecord> cells_of_run(int64_t run_id);

  void put_artifact(const ArtifactRecord& artifact) override;
  std::optional<ArtifactRecord> get_artifact(const std::string& key) override;

  std::string integrity_check();  // "ok" for a healthy file

  static constexpr int kSchemaVersion = 1;

 private:
  void exec(const char* sql);
  template <typename F>
  void transaction(F&& body);
  void load_details(CellRecord& cell);

  std::string path_;
  sqlite3* db_ = nullptr;
};

std::string utc_now();  // "YYYY-MM-DDTHH:MM:SSZ"

}  // namespace ikv::exp
