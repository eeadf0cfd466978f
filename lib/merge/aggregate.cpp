// n3/merge/aggregate.cpp — the aggregation rules themselves: passes over the inputs' chunks
// that compute norms (for clipping and --max-norm), Krum scores, the weighted average with the
// server optimisers of the stateful rules, and the coordinate median and trimmed mean.
//
// Every pass sums in double precision in canonical input order and reduces per-chunk partial
// sums in chunk order, so the bits do not depend on the number of threads (see merge.hpp).
// Mapped records have their checksum verified inside the first pass (crc_begin, crc_end).
#include "merge/kernels.hpp"
#include "merge/merger.hpp"
#include "privacy/noise.hpp"

#include "record/error.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>

namespace n3::merge {

namespace {

constexpr uint64_t kChunk = 65536; // elements per chunk of the averaging rules
constexpr size_t kSub = 512;       // coordinates per block of the sorting network

// Buffers every averaging pass needs, chunk elements each.
std::vector<Scratch> scratch_for(unsigned threads, uint64_t chunk) {
    std::vector<Scratch> scratch(threads);
    for (auto& s : scratch) {
        s.acc.resize(chunk);
        s.in.resize(chunk);
        s.base.resize(chunk);
        s.out.resize(chunk);
    }
    return scratch;
}

} // namespace

void Merger::crc_begin(const std::vector<Item*>& items, const std::vector<Chunk>& chunks) {
    crc_pending_.assign(items.size(), 0);
    bool any = false;
    for (size_t i = 0; i < items.size(); ++i) any |= (crc_pending_[i] = !items[i]->rec->verified);
    if (!any) {
        crc_pending_.clear();
        return;
    }
    crc_table_.assign(items.size() * chunks.size(), 0);
    crc_chunks_ = &chunks;
}

void Merger::crc_end(const std::vector<Item*>& items) {
    if (crc_pending_.empty()) return;
    const std::vector<Chunk>& chunks = *crc_chunks_;
    std::map<std::string, size_t> index;
    for (size_t t = 0; t < layout_.size(); ++t) index[layout_[t].name] = t;
    std::vector<size_t> first(layout_.size() + 1, chunks.size());
    for (size_t c = chunks.size(); c-- > 0;) first[chunks[c].tensor] = c;
    size_t n = items.size();
    for (size_t i = 0; i < n; ++i) {
        if (!crc_pending_[i]) continue;
        Item& it = *items[i];
        ByteView payload = it.rec->record.payload();
        uint64_t crc = crc_prefix(
            *it.rec, static_cast<uint64_t>(it.set->data_section().data() - payload.data()));
        for (auto& ti : it.set->tensors()) { // data order
            size_t t = index.at(ti.name);
            size_t es = dtype_size(ti.dtype);
            for (size_t c = first[t]; c < chunks.size() && chunks[c].tensor == t; ++c)
                crc = crc64_combine(crc, crc_table_[c * n + i], chunks[c].size * es);
        }
        if (crc != it.rec->key) {
            crc_pending_.clear();
            throw NonFinite{index_of(&it), "corrupted record (checksum mismatch)"};
        }
        it.rec->verified = true;
    }
    crc_pending_.clear();
}

void Merger::compute_norms(const std::vector<Item*>& items) {
    std::vector<Chunk> chunks = chunks_of(layout_, kChunk);
    size_t n = items.size();
    std::vector<double> partial(chunks.size() * n);
    std::vector<std::vector<float>> scratch(threads_, std::vector<float>(kChunk));
    crc_begin(items, chunks);
    for_chunks(chunks.size(), threads_, [&](size_t c, unsigned tid) {
        const Chunk& ch = chunks[c];
        for (size_t i = 0; i < n; ++i) {
            const float* x = floats(items[i]->src, ch.tensor, ch.begin, ch.size,
                                    scratch[tid].data(), crc_slot(i, c));
            double s = kernel::sum_squares(x, 1.0, ch.size);
            if (!std::isfinite(s)) throw holds_nan(items[i], ch.tensor);
            partial[c * n + i] = s;
            release(items[i]->src, ch.tensor, ch.begin, ch.size);
        }
    });
    crc_end(items);
    for (size_t i = 0; i < n; ++i) {
        double s = 0;
        for (size_t c = 0; c < chunks.size(); ++c) s += partial[c * n + i];
        items[i]->norm = std::sqrt(s);
        if (opt_.max_norm && items[i]->norm > *opt_.max_norm) {
            char msg[128];
            std::snprintf(msg, sizeof msg, "has L2 norm %.6g, above --max-norm %.6g",
                          items[i]->norm, *opt_.max_norm);
            throw NonFinite{index_of(items[i]), msg};
        }
        if (opt_.clip_norm && items[i]->norm > clip_norm())
            items[i]->clip = clip_norm() / items[i]->norm;
    }
}

void Merger::set_weights(const std::vector<Item*>& items) {
    size_t others = 0;
    for (Item* it : items) others += !it->is_self;
    for (Item* it : items) {
        if (rule_.robust() || opt_.weights == WeightMode::uniform ||
            (rule_.kind == RuleKind::mix && opt_.weights == WeightMode::samples))
            it->raw_weight = 1;
        else if (opt_.weights == WeightMode::list)
            it->raw_weight = opt_.weight_list[it->rec->position];
        else
            it->raw_weight = kind_ == RecordType::update ? double(*it->samples)
                                                         : double(it->samples.value_or(1));
        if (rule_.kind == RuleKind::mix && opt_.self_weight)
            it->raw_weight = it->is_self ? *opt_.self_weight
                                         : (others ? (1 - *opt_.self_weight) / double(others) : 0);
        if (!it->selected) it->raw_weight = 0;
    }
    double total = 0;
    for (Item* it : items) total += it->raw_weight;
    if (!(total > 0))
        throw DataError("the total weight of the " + std::to_string(items.size()) +
                            " inputs is zero",
                        opt_.weights == WeightMode::samples ? "every update has samples=0" : "");
    for (Item* it : items) it->weight = it->raw_weight / total;
    if (rule_.kind == RuleKind::fednova) fednova_weights(items);
}

std::vector<double> Merger::pairwise(const std::vector<Item*>& items, bool diagonal,
                                     const PairFn& f) {
    const size_t n = items.size();
    const uint64_t chunk = std::clamp<uint64_t>((uint64_t(1) << 22) / n, 1024, kChunk);
    std::vector<Chunk> chunks = chunks_of(layout_, chunk);
    const size_t first = diagonal ? 0 : 1; // j starts at i + first
    const size_t pairs = diagonal ? n * (n + 1) / 2 : n * (n - 1) / 2;
    std::vector<double> partial(chunks.size() * pairs);
    std::vector<std::vector<float>> scratch(threads_, std::vector<float>(n * chunk));
    crc_begin(items, chunks);
    for_chunks(chunks.size(), threads_, [&](size_t c, unsigned tid) {
        const Chunk& ch = chunks[c];
        std::vector<const float*> x(n);
        for (size_t i = 0; i < n; ++i) {
            x[i] = floats(items[i]->src, ch.tensor, ch.begin, ch.size,
                          scratch[tid].data() + i * chunk, crc_slot(i, c));
            if (!kernel::all_finite(x[i], ch.size)) throw holds_nan(items[i], ch.tensor);
        }
        double* out = partial.data() + c * pairs;
        for (size_t i = 0, p = 0; i < n; ++i)
            for (size_t j = i + first; j < n; ++j, ++p)
                out[p] = f(x[i], *items[i], x[j], *items[j], ch.size);
        for (size_t i = 0; i < n; ++i) release(items[i]->src, ch.tensor, ch.begin, ch.size);
    });
    crc_end(items);
    // Chunk sums in chunk order, whatever thread computed them: the same bits every run.
    std::vector<double> m(n * n, 0.0);
    for (size_t i = 0, p = 0; i < n; ++i)
        for (size_t j = i + first; j < n; ++j, ++p) {
            double sum = 0;
            for (size_t c = 0; c < chunks.size(); ++c) sum += partial[c * pairs + p];
            m[i * n + j] = m[j * n + i] = sum;
        }
    return m;
}

void Merger::select_krum(const std::vector<Item*>& items) {
    size_t n = items.size();
    size_t f = rule_.f.value_or(n >= 3 ? (n - 3) / 2 : 0);
    if (n < 2 * f + 3)
        throw IncompleteError(rule_.name() + " with f=" + std::to_string(f) + " needs at least " +
                              std::to_string(2 * f + 3) + " inputs (n >= 2f+3), got " +
                              std::to_string(n));
    size_t m = rule_.kind == RuleKind::krum ? 1 : rule_.m.value_or(n - f);
    if (m > n)
        throw UsageError("multi-krum:" + std::to_string(f) + "," + std::to_string(m) +
                         " averages more inputs than there are (" + std::to_string(n) + ")");
    const std::vector<double> dist =
        pairwise(items, false,
                 [](const float* a, const Item& ia, const float* b, const Item& ib, size_t len) {
                     return kernel::squared_distance(a, ia.clip, b, ib.clip, len);
                 });
    // score(i) = sum of the n-f-2 smallest squared distances from i to the others.
    std::vector<double> score(n);
    for (size_t i = 0; i < n; ++i) {
        std::vector<double> d;
        for (size_t j = 0; j < n; ++j)
            if (j != i) d.push_back(dist[i * n + j]);
        std::sort(d.begin(), d.end());
        score[i] = std::accumulate(d.begin(), d.begin() + static_cast<long>(n - f - 2), 0.0);
    }
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return score[a] < score[b]; });
    for (Item* it : items) it->selected = false;
    for (size_t k = 0; k < m; ++k) items[order[k]]->selected = true;
}

// Output element = base + step, where step comes from the weighted average `acc` and the
// rule's server optimiser.
bool Merger::finish_chunk(const Chunk& c, const double* acc, Scratch& s) {
    Result::Impl& r = *out_;
    size_t t = c.tensor;
    size_t n = c.size;
    const float* base = base_set_ ? floats(base_src_, t, c.begin, n, s.base.data()) : nullptr;
    float* out = out_floats(r.out.data[t].data(), r.dtypes[t], c.begin, s.out.data());
    bool ok = true;
    double lr = opt_.server_lr.value_or(rule_.adaptive() ? 0.01 : 1.0);
    if (!control_.empty() && control_[t]) lr = 1; // SCAFFOLD's c moves by the mean of dc
    if (!rule_.stateful()) {
        ok = kernel::store(out, acc, kind_ == RecordType::update ? lr : 1.0, base, n);
    } else {
        float* m = out_floats(r.state_m.data[t].data(), DType::F32, c.begin, nullptr);
        float* v =
            r.has_v ? out_floats(r.state_v.data[t].data(), DType::F32, c.begin, nullptr) : nullptr;
        const float* m0 = state_set_ ? floats(state_m_src_, t, c.begin, n, s.m.data()) : nullptr;
        const float* v0 =
            state_set_ && r.has_v ? floats(state_v_src_, t, c.begin, n, s.v.data()) : nullptr;
        double b1 = opt_.beta1, b2 = opt_.beta2, tau = opt_.tau;
        double v_init = tau * tau;
        std::vector<double>& step = s.column;
        for (size_t j = 0; j < n; ++j) {
            double d = acc[j];
            double mo = m0 ? double(m0[j]) : 0.0;
            double mn;
            if (rule_.kind == RuleKind::fedavgm) {
                mn = b1 * mo + d;
                m[j] = float(mn);
                step[j] = double(m[j]);
                continue;
            }
            mn = b1 * mo + (1 - b1) * d;
            double vo = v0 ? double(v0[j]) : v_init;
            double d2 = d * d, vn;
            if (rule_.kind == RuleKind::fedadam)
                vn = b2 * vo + (1 - b2) * d2;
            else if (rule_.kind == RuleKind::fedyogi)
                vn = vo - (1 - b2) * d2 * (vo - d2 > 0 ? 1.0 : vo - d2 < 0 ? -1.0 : 0.0);
            else
                vn = vo + d2;
            m[j] = float(mn);
            v[j] = float(vn);
            step[j] = double(m[j]) / (std::sqrt(double(v[j])) + tau);
        }
        ok = kernel::store(out, step.data(), lr, base, n);
        if (m0) release(state_m_src_, t, c.begin, n);
        if (v0) release(state_v_src_, t, c.begin, n);
    }
    if (!ok) return false;
    if (r.dtypes[t] != DType::F32) put(r.out.data[t].data(), r.dtypes[t], c.begin, out, n);
    if (base) release(base_src_, t, c.begin, n);
    return true;
}

// A chunk's result is not finite: blame an input, the base, the state, or overflow.
void Merger::diagnose(const std::vector<Item*>& items, const Chunk& c, Scratch& s) {
    Result::Impl& r = *out_;
    size_t t = c.tensor, n = c.size;
    for (Item* it : items) {
        if (!kernel::all_finite(floats(it->src, t, c.begin, n, s.in.data()), n))
            throw holds_nan(it, t);
    }
    if (base_set_ && !kernel::all_finite(floats(base_src_, t, c.begin, n, s.base.data()), n))
        throw DataError("--base " + *req_.base + ": tensor '" + layout_[t].name +
                        "' holds NaN or Inf");
    if (state_set_) {
        bool bad = !kernel::all_finite(floats(state_m_src_, t, c.begin, n, s.in.data()), n);
        if (r.has_v)
            bad = bad || !kernel::all_finite(floats(state_v_src_, t, c.begin, n, s.in.data()), n);
        if (bad)
            throw DataError("--state " + *req_.state + ": tensor '" + layout_[t].name +
                            "' holds NaN or Inf");
    }
    throw DataError("the merged tensor '" + layout_[t].name + "' overflows " +
                    std::string(dtype_name(r.dtypes[t])));
}

void Merger::average(const std::vector<Item*>& items) {
    std::vector<Chunk> chunks = chunks_of(layout_, kChunk);
    std::vector<Scratch> scratch = scratch_for(threads_, kChunk);
    for (auto& s : scratch) {
        s.m.resize(kChunk);
        s.v.resize(kChunk);
        s.column.resize(kChunk);
    }
    std::vector<Item*> active;
    for (Item* it : items)
        if (it->weight > 0) active.push_back(it);
    crc_begin(active, chunks);
    for_chunks(chunks.size(), threads_, [&](size_t c, unsigned tid) {
        const Chunk& ch = chunks[c];
        Scratch& s = scratch[tid];
        for (size_t i = 0; i < active.size(); ++i) {
            const float* x =
                floats(active[i]->src, ch.tensor, ch.begin, ch.size, s.in.data(), crc_slot(i, c));
            double w = tensor_weight(active[i], ch.tensor);
            if (i == 0)
                kernel::scale(s.acc.data(), x, w, ch.size);
            else
                kernel::axpy(s.acc.data(), x, w, ch.size);
        }
        if (dp_sd_ > 0) privacy::add_gaussian(s.acc.data(), ch.size, dp_sd_);
        // A non-finite input makes the sum, and so the output, non-finite: the check on the
        // output covers every input without another pass over them.
        if (!finish_chunk(ch, s.acc.data(), s)) diagnose(active, ch, s);
        for (Item* it : active) release(it->src, ch.tensor, ch.begin, ch.size);
    });
    crc_end(active);
}

void Merger::robust_average(const std::vector<Item*>& items) {
    size_t n = items.size();
    size_t trim =
        rule_.kind == RuleKind::trimmed_mean ? size_t(std::floor(rule_.trim * double(n))) : 0;
    if (rule_.kind == RuleKind::trimmed_mean && 2 * trim >= n)
        throw IncompleteError("trimmed-mean cuts " + std::to_string(trim) + " of " +
                              std::to_string(n) + " inputs at each end, leaving none");
    uint64_t chunk = std::clamp<uint64_t>((uint64_t(1) << 22) / n, 1024, kChunk);
    std::vector<Chunk> chunks = chunks_of(layout_, chunk);
    std::vector<Scratch> scratch = scratch_for(threads_, chunk);
    for (auto& s : scratch) {
        s.gathered.resize(n * chunk);
        s.column.resize(n);
        s.rows.resize(n * kSub);
    }
    crc_begin(items, chunks);
    for_chunks(chunks.size(), threads_, [&](size_t c, unsigned tid) {
        const Chunk& ch = chunks[c];
        Scratch& s = scratch[tid];
        std::vector<const float*> x(n);
        for (size_t i = 0; i < n; ++i) {
            x[i] = floats(items[i]->src, ch.tensor, ch.begin, ch.size,
                          s.gathered.data() + i * chunk, crc_slot(i, c));
            if (!kernel::all_finite(x[i], ch.size)) throw holds_nan(items[i], ch.tensor);
        }
        // Blocks of kSub coordinates: the n rows stay in cache while a sorting network orders
        // every column at once; then the median or trimmed mean reads the sorted rows.
        double* rows = s.rows.data();
        for (size_t j0 = 0; j0 < ch.size; j0 += kSub) {
            size_t m = std::min<size_t>(kSub, ch.size - j0);
            for (size_t i = 0; i < n; ++i)
                for (size_t j = 0; j < m; ++j)
                    rows[i * kSub + j] = items[i]->clip * double(x[i][j0 + j]);
            if (n <= 32) {
                kernel::sort_columns(rows, n, kSub, m);
            } else {
                double* col = s.column.data();
                for (size_t j = 0; j < m; ++j) {
                    for (size_t i = 0; i < n; ++i) col[i] = rows[i * kSub + j];
                    std::sort(col, col + n);
                    for (size_t i = 0; i < n; ++i) rows[i * kSub + j] = col[i];
                }
            }
            double* out = s.acc.data() + j0;
            if (rule_.kind == RuleKind::median) {
                const double* lo = rows + (n - 1) / 2 * kSub;
                const double* hi = rows + n / 2 * kSub;
                for (size_t j = 0; j < m; ++j) out[j] = n % 2 ? hi[j] : (lo[j] + hi[j]) / 2;
            } else {
                for (size_t j = 0; j < m; ++j) out[j] = 0;
                for (size_t i = trim; i < n - trim; ++i)
                    for (size_t j = 0; j < m; ++j) out[j] += rows[i * kSub + j];
                for (size_t j = 0; j < m; ++j) out[j] /= double(n - 2 * trim);
            }
        }
        if (!finish_chunk(ch, s.acc.data(), s)) diagnose(items, ch, s);
        for (size_t i = 0; i < n; ++i) release(items[i]->src, ch.tensor, ch.begin, ch.size);
    });
    crc_end(items);
}

} // namespace n3::merge
