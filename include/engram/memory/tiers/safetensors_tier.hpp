// engram/memory/tiers/safetensors_tier.hpp: the RowTier of a table stored as tensors inside
// ordinary safetensors shards, as DeepSeek-V4.1 ships it, served without a repack:
//   layers.L.engram.embed.weight  F8_E4M3 [rows, r] (or a dense codec's dtype, no scale)
//   layers.L.engram.embed.scale   F8_E8M0 [rows, ceil(r / 32)] (vLLM: embed.weight_scale_inv)
// The two tensors may sit in one shard or in two. A record is weight[g] ++ scale[g] (row_tier.hpp).
// Direct modes read the 4 KiB pages covering each row's byte ranges (io_uring or pread, O_DIRECT);
// io = kMmap copies from the mapped shard. Read plan: docs/design/memory.md.
//
// Validation at open (errors name the file and tensor): the safetensors header, the weight dtype
// (a registered codec's, codec_registry.hpp) and shape [rows, r], the scale dtype and shape.
// Guarantees: all or nothing; out-of-range ids, I/O errors, short reads and NaN scale codes in a
// served row throw naming file, tensor and row. Records are the shard's bytes, so their decode
// equals the in-memory table's bit for bit.
// Thread safety: direct modes, one fetch at a time; kMmap fetches may run concurrently.
// Steady-state fetches do not allocate.
//
//   SafetensorsTier tier("model-00002-of-00003.safetensors", "layers.1.engram.embed.weight",
//                        "model-00003-of-00003.safetensors", "layers.1.engram.embed.scale");
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engram/error.hpp"
#include "engram/io/safetensors.hpp"
#include "engram/memory/codec_registry.hpp"
#include "engram/memory/detail/io.hpp"
#include "engram/memory/tiers/direct_io_tier.hpp"
#include "engram/memory/tiers/page_reader.hpp"
#include "engram/memory/tiers/row_tier.hpp"

namespace engram {

/// Options of a SafetensorsTier.
struct SafetensorsTierOptions {
  enum class Io { kAuto, kDirect, kBuffered, kMmap };
  Io io = Io::kAuto;         ///< O_DIRECT where the filesystem allows it, always, never, or mmap
  PageReaderOptions reader;  ///< backend (io_uring / pread), queue depth, threads
  int64_t quant_block = 32;  ///< values per E8M0 scale byte (FP8 tables)
  bool check_scales = true;  ///< refuse rows holding the NaN scale code 0xFF
};

/// Where a table's tensors are: the weight tensor and, for FP8 rows, its scale tensor.
struct SafetensorsTableSource {
  std::string weight_file, weight_tensor;
  std::string scale_file, scale_tensor;  ///< both empty for dense rows
};

/// The row codec (codec.hpp kName) of table rows stored as `dtype`: fp8_e4m3 (F8_E4M3, with an
/// F8_E8M0 scale tensor), f32, bf16, f16; empty for any other dtype.
constexpr std::string_view row_codec_of(DType dtype) noexcept {
  return codec_name_of_dtype(dtype_name(dtype));
}

namespace detail {

/// The scale tensor of FP8 weight `weight` in `file`: `X.scale` for weight `X.weight` (as
/// shipped) or `X.weight_scale_inv` (vLLM); empty when neither exists.
inline std::string find_scale_tensor(const SafetensorsFile& file, const std::string& weight) {
  std::vector<std::string> names;
  if (weight.ends_with(".weight")) names.push_back(weight.substr(0, weight.size() - 7) + ".scale");
  names.push_back(weight + "_scale_inv");
  for (const auto& name : names)
    if (file.find(name) != nullptr) return name;
  return {};
}

}  // namespace detail

/// Rows of a table inside safetensors shards. @tparam Reader the PageReader of direct modes.
template <PageReader Reader = AutoPageReader>
class SafetensorsTierT {
 public:
  static constexpr int64_t kPageBytes = detail::kIoAlignment;

  /// A table whose weight and scale tensors are both in `shard`. `tensor` names the weight
  /// ("layers.1.engram.embed.weight") or its prefix ("layers.1.engram.embed"); the scale is found
  /// as `.scale` or `.weight_scale_inv`.
  SafetensorsTierT(const std::string& shard, const std::string& tensor,
                   SafetensorsTierOptions options = {})
      : SafetensorsTierT(resolve(shard, tensor), options) {}

  /// A table whose weight and scale tensors may be in different shards.
  SafetensorsTierT(const std::string& weight_file, const std::string& weight_tensor,
                   const std::string& scale_file, const std::string& scale_tensor,
                   SafetensorsTierOptions options = {})
      : SafetensorsTierT(
            SafetensorsTableSource{weight_file, weight_tensor, scale_file, scale_tensor}, options) {
  }

  SafetensorsTierT(const SafetensorsTableSource& source, SafetensorsTierOptions options)
      : source_(source), options_(options) {
    ENGRAM_CHECK(options_.quant_block > 0, source_.weight_file,
                 ": quant_block must be positive, found ", options_.quant_block);
    auto weight_file = std::make_shared<const SafetensorsFile>(source_.weight_file);
    const TensorView& w = weight_file->at(source_.weight_tensor);
    const std::string where = source_.weight_file + ": tensor '" + source_.weight_tensor + "'";
    ENGRAM_CHECK(w.shape.size() == 2, where, " has shape ", shape_string(w.shape),
                 ", expected [rows, row_dim]");
    num_rows_ = w.shape[0];
    row_dim_ = w.shape[1];
    codec_ = row_codec_of(w.dtype);
    ENGRAM_CHECK(!codec_.empty(), where, " has dtype ", dtype_name(w.dtype),
                 ", expected F8_E4M3 (with an F8_E8M0 scale), F32, BF16 or F16");
    ENGRAM_CHECK(row_dim_ > 0, where, " has shape ", shape_string(w.shape),
                 ": rows of 0 values cannot be served");
    data_bytes_ = row_dim_ * dtype_size(w.dtype);
    ranges_[0] = {0, weight_file->file_offset(w), data_bytes_, 0};

    const bool fp8 = w.dtype == DType::kF8E4M3;
    std::shared_ptr<const SafetensorsFile> scale_file;
    if (fp8) {
      if (source_.scale_file.empty()) source_.scale_file = source_.weight_file;
      scale_file = source_.scale_file == source_.weight_file
                       ? weight_file
                       : std::make_shared<const SafetensorsFile>(source_.scale_file);
      if (source_.scale_tensor.empty())
        source_.scale_tensor = detail::find_scale_tensor(*scale_file, source_.weight_tensor);
      ENGRAM_CHECK(!source_.scale_tensor.empty(), where,
                   " is F8_E4M3 but its scale tensor is missing from ", source_.scale_file,
                   " (looked for '.scale' and '_scale_inv')");
      const TensorView& s = scale_file->at(source_.scale_tensor);
      const std::string swhere = source_.scale_file + ": tensor '" + source_.scale_tensor + "'";
      ENGRAM_CHECK(s.dtype == DType::kF8E8M0, swhere, " has dtype ", dtype_name(s.dtype),
                   ", expected F8_E8M0");
      const int64_t blocks = (row_dim_ + options_.quant_block - 1) / options_.quant_block;
      ENGRAM_CHECK(s.shape.size() == 2 && s.shape[0] == num_rows_ && s.shape[1] == blocks, swhere,
                   " has shape ", shape_string(s.shape), ", expected [", num_rows_, ", ", blocks,
                   "] (one scale per ", options_.quant_block, " values of ", where, " [", num_rows_,
                   ", ", row_dim_, "])");
      scale_bytes_ = blocks;
      ranges_[1] = {0, scale_file->file_offset(s), scale_bytes_, data_bytes_};
      num_ranges_ = 2;
    } else {
      ENGRAM_CHECK(source_.scale_tensor.empty(), where, " has dtype ", dtype_name(w.dtype),
                   ": dense rows take no scale tensor, found '", source_.scale_tensor, "'");
      source_.scale_file.clear();
    }
    row_bytes_ = data_bytes_ + scale_bytes_;

    if (options_.io == SafetensorsTierOptions::Io::kMmap) {
      weight_map_ = std::move(weight_file);
      scale_map_ = std::move(scale_file);
      ranges_[0].base = weight_map_->at(source_.weight_tensor).bytes.data();
      if (num_ranges_ == 2) ranges_[1].base = scale_map_->at(source_.scale_tensor).bytes.data();
      return;
    }
    add_file(source_.weight_file);
    if (num_ranges_ == 2) ranges_[1].file = add_file(source_.scale_file);
  }
  SafetensorsTierT(const SafetensorsTierT&) = delete;
  SafetensorsTierT& operator=(const SafetensorsTierT&) = delete;

  int64_t num_rows() const noexcept { return num_rows_; }
  int64_t row_bytes() const noexcept { return row_bytes_; }
  /// Values per row (the weight tensor's second dimension).
  int64_t row_dim() const noexcept { return row_dim_; }
  /// The codec of the records (codec.hpp kName): fp8_e4m3, f32, bf16 or f16.
  const std::string& codec() const noexcept { return codec_; }
  /// Where the tensors are (scale names resolved).
  const SafetensorsTableSource& source() const noexcept { return source_; }
  /// Whether reads bypass the page cache (false for buffered and mmap).
  bool direct() const noexcept { return !files_.empty() && files_.front()->direct; }
  std::string describe() const {
    std::string mode;
    if (files_.empty()) {
      mode = "mmap";
    } else {
      const File& f = *files_.front();
      mode = std::string(f.direct ? "O_DIRECT" : "buffered") +
             (f.note.empty() ? "" : ": " + f.note) + "; " + f.reader->describe();
    }
    std::string where = source_.weight_file + " '" + source_.weight_tensor + "'";
    if (num_ranges_ == 2)
      where += " + " + (source_.scale_file == source_.weight_file ? "" : source_.scale_file + " ") +
               "'" + source_.scale_tensor + "'";
    return "safetensors: " + where + " (" + mode + ")";
  }

  /// Copies the rows `ids` to `out` (see the banner and row_tier.hpp).
  FetchReport fetch(std::span<const int64_t> ids, std::span<std::byte> out) {
    detail::check_fetch_args(source_.weight_file, ids, out, num_rows_, row_bytes_);
    FetchReport report;
    report.rows = static_cast<int64_t>(ids.size());
    if (files_.empty()) {
      report.rows_from_memory = report.rows;
      report.bytes_read = report.rows * row_bytes_;
      for (size_t i = 0; i < ids.size(); ++i)
        for (int r = 0; r < num_ranges_; ++r) {
          const Range& range = ranges_[r];
          std::memcpy(out.data() + static_cast<int64_t>(i) * row_bytes_ + range.record_offset,
                      range.base + ids[i] * range.bytes, static_cast<size_t>(range.bytes));
        }
    } else {
      report.rows_from_storage = report.rows;
      for (size_t f = 0; f < files_.size(); ++f)
        report.pages_read += read_file(static_cast<int>(f), ids, out.data());
      report.bytes_read = report.pages_read * kPageBytes;
    }
    if (num_ranges_ == 2 && options_.check_scales) check_scales(ids, out.data());
    return report;
  }

 private:
  // One tensor's bytes: row g at offset + g * bytes of file `file` (or base + g * bytes mapped),
  // copied to record offset `record_offset`.
  struct Range {
    int file = 0;
    int64_t offset = 0;
    int64_t bytes = 0;
    int64_t record_offset = 0;
    const std::byte* base = nullptr;
  };
  // A part of one row's range inside one page.
  struct Piece {
    int64_t page;
    int64_t out_offset;
    uint32_t in_page;
    uint32_t length;
  };
  struct File {
    std::string path;
    bool direct = false;
    std::string note;
    detail::FileDescriptor fd;
    std::unique_ptr<Reader> reader;
    int64_t full_pages = 0;  // pages [0, full_pages) are whole; the rest is `tail`
    detail::IoBuffer tail;
    std::vector<Piece> pieces;  // per-fetch scratch
    std::vector<int64_t> offsets;
    std::vector<size_t> group_begin;
  };

  static SafetensorsTableSource resolve(const std::string& shard, const std::string& tensor) {
    SafetensorsTableSource source{shard, tensor, {}, {}};
    const SafetensorsFile file(shard);
    if (file.find(tensor) == nullptr && file.find(tensor + ".weight") != nullptr)
      source.weight_tensor = tensor + ".weight";
    return source;
  }

  int add_file(const std::string& path) {
    for (size_t f = 0; f < files_.size(); ++f)
      if (files_[f]->path == path) return static_cast<int>(f);
    auto file = std::make_unique<File>();
    file->path = path;
    using Io = SafetensorsTierOptions::Io;
    const auto mode = options_.io == Io::kDirect     ? DirectIOOptions::Mode::kDirect
                      : options_.io == Io::kBuffered ? DirectIOOptions::Mode::kBuffered
                                                     : DirectIOOptions::Mode::kAuto;
    file->fd = detail::open_for_page_reads(path, mode, 0, kPageBytes, file->direct, file->note);
    const int64_t size = detail::file_size(file->fd.get(), path);
    file->full_pages = size / kPageBytes;
    file->tail = detail::IoBuffer(kPageBytes);
    const int64_t tail_bytes = size - file->full_pages * kPageBytes;
    if (tail_bytes > 0) {
      // O_DIRECT reads must be whole aligned blocks: read the partial last page buffered.
      detail::FileDescriptor buffered(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      ENGRAM_CHECK(buffered.valid(), path, ": cannot open: ", detail::errno_text(errno));
      detail::pread_exact(buffered.get(), file->tail.data(), tail_bytes,
                          file->full_pages * kPageBytes, path, "the last partial page");
    }
    file->reader = std::make_unique<Reader>(file->fd.get(), kPageBytes, options_.reader);
    files_.push_back(std::move(file));
    return static_cast<int>(files_.size() - 1);
  }

  // Reads the pieces of every range stored in file f; returns the pages read.
  int64_t read_file(int f, std::span<const int64_t> ids, std::byte* out) {
    File& file = *files_[static_cast<size_t>(f)];
    file.pieces.clear();
    for (int r = 0; r < num_ranges_; ++r) {
      const Range& range = ranges_[r];
      if (range.file != f) continue;
      for (size_t i = 0; i < ids.size(); ++i) {
        const int64_t begin = range.offset + ids[i] * range.bytes, end = begin + range.bytes;
        const int64_t record = static_cast<int64_t>(i) * row_bytes_ + range.record_offset;
        for (int64_t page = begin / kPageBytes; page * kPageBytes < end; ++page) {
          const int64_t a = std::max(begin, page * kPageBytes);
          const int64_t b = std::min(end, (page + 1) * kPageBytes);
          file.pieces.push_back({page, record + (a - begin),
                                 static_cast<uint32_t>(a - page * kPageBytes),
                                 static_cast<uint32_t>(b - a)});
        }
      }
    }
    std::sort(file.pieces.begin(), file.pieces.end(),
              [](const Piece& x, const Piece& y) { return x.page < y.page; });
    file.offsets.clear();
    file.group_begin.clear();
    size_t j = 0;
    const size_t n = file.pieces.size();
    for (; j < n && file.pieces[j].page < file.full_pages; ++j) {
      if (file.offsets.empty() ||
          file.pieces[file.group_begin.back()].page != file.pieces[j].page) {
        file.offsets.push_back(file.pieces[j].page * kPageBytes);
        file.group_begin.push_back(j);
      }
    }
    const size_t tail_begin = j;
    file.group_begin.push_back(tail_begin);
    for (; j < n; ++j) {  // the partial last page, read at open
      const Piece& p = file.pieces[j];
      std::memcpy(out + p.out_offset, file.tail.data() + p.in_page, p.length);
    }
    auto on_page = [&](size_t k, const std::byte* data) noexcept -> bool {
      for (size_t q = file.group_begin[k]; q < file.group_begin[k + 1]; ++q) {
        const Piece& p = file.pieces[q];
        std::memcpy(out + p.out_offset, data + p.in_page, p.length);
      }
      return true;
    };
    const PageReadStatus status =
        file.reader->read_pages(std::span<const int64_t>(file.offsets), on_page);
    if (status.failed_index >= 0) {
      const int64_t offset = file.offsets[static_cast<size_t>(status.failed_index)];
      const std::string where =
          detail::concat(file.path, ": page at file offset ", offset, " (", kPageBytes, " bytes, ",
                         file.direct ? "O_DIRECT" : "buffered", ", ", file.reader->describe(), ")");
      if (status.error != 0) detail::fail(where, ": I/O error: ", detail::errno_text(status.error));
      detail::fail(where, ": short read: got ", status.bytes, " of ", kPageBytes,
                   " bytes; the file was truncated or replaced after it was opened");
    }
    ENGRAM_CHECK(status.ok(), file.path, ": page reader stopped without a reason");
    return static_cast<int64_t>(file.offsets.size());
  }

  void check_scales(std::span<const int64_t> ids, const std::byte* out) const {
    for (size_t i = 0; i < ids.size(); ++i) {
      const std::byte* scales = out + static_cast<int64_t>(i) * row_bytes_ + data_bytes_;
      const void* nan = std::memchr(scales, 0xFF, static_cast<size_t>(scale_bytes_));
      if (nan != nullptr)
        detail::fail(source_.scale_file, ": tensor '", source_.scale_tensor, "' row ", ids[i],
                     " (batch position ", i, ") holds the NaN scale code 0xFF in block ",
                     static_cast<const std::byte*>(nan) - scales, "; refusing to serve the row");
    }
  }

  SafetensorsTableSource source_;
  SafetensorsTierOptions options_;
  std::string codec_;
  int64_t num_rows_ = 0, row_dim_ = 0, data_bytes_ = 0, scale_bytes_ = 0, row_bytes_ = 0;
  Range ranges_[2];
  int num_ranges_ = 1;
  std::shared_ptr<const SafetensorsFile> weight_map_, scale_map_;  // kMmap
  std::vector<std::unique_ptr<File>> files_;                       // direct modes
};

using SafetensorsTier = SafetensorsTierT<>;
static_assert(RowTier<SafetensorsTier>);

}  // namespace engram
