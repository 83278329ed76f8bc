// engram/io/model_directory.hpp: tensors of a Hugging Face checkpoint directory, across shards.
//
// A directory holds config.json and either model.safetensors.index.json ({"weight_map": {tensor
// name: shard file}}) with its shards, or one model.safetensors (no index). ModelDirectory reads
// the index at construction and maps a shard (io/safetensors.hpp, validated like every file) only
// when a tensor in it is first asked for, so loading two Engram layers touches only the shards
// that hold them. Errors name the directory's file and the tensor: a name the index lacks, a shard
// that is missing, an index entry whose shard has no such tensor.
// Ownership: shards are shared_ptr<const SafetensorsFile>; views stay valid while one is held.
// Thread safety: tensor()/file_of() open shards lazily and are not thread-safe; load first, then
// share the loaded layers.
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "engram/error.hpp"
#include "engram/io/config_json.hpp"
#include "engram/io/safetensors.hpp"

namespace engram {

/// The tensors of a (sharded) Hugging Face checkpoint directory.
class ModelDirectory {
 public:
  static constexpr const char* kIndexName = "model.safetensors.index.json";
  static constexpr const char* kSingleName = "model.safetensors";

  explicit ModelDirectory(std::string dir) : dir_(std::move(dir)) {
    namespace fs = std::filesystem;
    ENGRAM_CHECK(fs::is_directory(dir_), dir_, ": not a model directory");
    const std::string index = path_of(kIndexName);
    if (fs::exists(index)) {
      read_index(index);
      return;
    }
    const std::string single = path_of(kSingleName);
    ENGRAM_CHECK(fs::exists(single), dir_, ": neither ", kIndexName, " nor ", kSingleName,
                 " found");
    auto file = std::make_shared<const SafetensorsFile>(single);
    for (const TensorView& t : file->tensors()) weight_map_[t.name] = kSingleName;
    shards_[kSingleName] = std::move(file);
    source_ = single;
  }

  const std::string& path() const noexcept { return dir_; }
  /// dir/name.
  std::string path_of(const std::string& name) const {
    return (std::filesystem::path(dir_) / name).string();
  }
  /// Tensor name -> shard file name.
  const std::map<std::string, std::string>& weight_map() const noexcept { return weight_map_; }
  bool contains(const std::string& name) const { return weight_map_.count(name) != 0; }

  /// The shard file name holding `name`; throws naming the index when absent.
  const std::string& shard_of(const std::string& name) const {
    const auto it = weight_map_.find(name);
    ENGRAM_CHECK(it != weight_map_.end(), source_, ": no tensor '", name, "'");
    return it->second;
  }

  /// Shard files holding the tensors whose names start with `prefix` (sorted, unique).
  std::vector<std::string> shards_with_prefix(const std::string& prefix) const {
    std::set<std::string> out;
    for (const auto& [name, shard] : weight_map_)
      if (name.rfind(prefix, 0) == 0) out.insert(shard);
    return {out.begin(), out.end()};
  }

  /// The mapped shard holding `name` (mapped on first use).
  std::shared_ptr<const SafetensorsFile> file_of(const std::string& name) const {
    const std::string& shard = shard_of(name);
    auto it = shards_.find(shard);
    if (it == shards_.end()) {
      const std::string path = path_of(shard);
      ENGRAM_CHECK(std::filesystem::exists(path), source_, ": tensor '", name, "' is in shard '",
                   shard, "', which is missing from ", dir_);
      it = shards_.emplace(shard, std::make_shared<const SafetensorsFile>(path)).first;
    }
    ENGRAM_CHECK(it->second->find(name) != nullptr, source_, ": tensor '", name,
                 "' is mapped to shard '", shard, "', which has no such tensor");
    return it->second;
  }

  /// The tensor `name` (its shard stays mapped while this directory or a file_of() copy lives).
  const TensorView& tensor(const std::string& name) const { return file_of(name)->at(name); }

  /// Shards mapped so far.
  std::vector<std::shared_ptr<const SafetensorsFile>> open_shards() const {
    std::vector<std::shared_ptr<const SafetensorsFile>> out;
    for (const auto& [name, file] : shards_) out.push_back(file);
    return out;
  }

 private:
  void read_index(const std::string& index) {
    source_ = index;
    const nlohmann::json j = detail::read_json_file(index, "index");
    ENGRAM_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), index,
                 ": missing object field 'weight_map'");
    for (const auto& [name, shard] : j["weight_map"].items()) {
      ENGRAM_CHECK(shard.is_string(), index, ": field 'weight_map' entry '", name,
                   "' must be a file name, found ", shard.dump());
      const std::string file = shard.get<std::string>();
      ENGRAM_CHECK(!file.empty() && file.find('/') == std::string::npos && file != "..", index,
                   ": field 'weight_map' entry '", name, "' names '", file,
                   "', not a file in the directory");
      weight_map_[name] = file;
    }
  }

  std::string dir_;
  std::string source_;  ///< the index (or single file) path, for messages
  std::map<std::string, std::string> weight_map_;
  mutable std::map<std::string, std::shared_ptr<const SafetensorsFile>> shards_;
};

}  // namespace engram
