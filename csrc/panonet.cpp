// The panonet operator library: every op schema is declared here, once. Kernels are registered
// per device in ops/cpu/*.cpp and ops/cuda/*.cu; fake kernels and autograd formulas from Python
// (python/panonet/ops). The pybind11 module panonet._C is only the shell that loads them, plus
// a few facts about how it was built.
#include <pybind11/pybind11.h>
#include <torch/library.h>

TORCH_LIBRARY(panonet, m) {
  // PanoNet eqs. (2)-(4) per image. Returns the (B, 3) unweighted [L_var, L_dist, L_reg] and what
  // the backward needs: per-pixel global cluster index (B, H, W) int32 (-1: ignored), per-image
  // cluster offsets (B + 1) int64, cluster means (K', D), dL/dmu per term (K', 3, D) and pixel
  // counts (K') int64. Rows [0, offsets[B]) are the clusters of the batch; K' >= offsets[B]
  // (the CPU returns exactly offsets[B] rows; CUDA returns B * H * W rows, an upper bound known
  // without reading the device, the rest unused). check_inputs: raise on NaN / Inf in the
  // embedding (on CUDA this costs one host synchronization; without it such values give
  // non-finite losses).
  m.def(
      "discriminative_loss(Tensor embedding, Tensor instance_ids, float delta_v, float delta_d, "
      "float delta_r, int ignore_index, bool check_inputs=True) -> (Tensor losses, "
      "Tensor labels, Tensor offsets, Tensor means, Tensor mu_grads, Tensor counts)");
  // Gradient w.r.t. the embedding (B, D, H, W) given the gradient of the (B, 3) losses.
  m.def(
      "discriminative_loss_backward(Tensor grad_losses, Tensor embedding, Tensor labels, "
      "Tensor offsets, Tensor means, Tensor mu_grads, Tensor counts, float delta_v) -> Tensor");
  // Bin-seeded flat-kernel mean-shift with sklearn.cluster.MeanShift's semantics. points (N, D)
  // -> labels (N) int64 (-1: no cluster, with cluster_all=False) and centers (K, D).
  m.def(
      "mean_shift(Tensor points, float bandwidth, bool bin_seeding, int min_bin_freq, "
      "int max_iter, bool cluster_all) -> (Tensor labels, Tensor centers)");
  // Mean-shift of each image's pixels of each class with bandwidth[class] > 0, over the
  // embedding. embedding (B, D, H, W) or (D, H, W), semantic (B, H, W) or (H, W) -> instance
  // ids of the semantic's shape, int64: 0 where not clustered, 1..K unique within an image.
  // check_inputs=False skips the checks that wait for a GPU (see the Python wrapper).
  m.def(
      "cluster_instances(Tensor embedding, Tensor semantic, Tensor bandwidth, int min_bin_freq, "
      "int max_iter, bool check_inputs=True) -> Tensor");
  // Per-pixel class of logits (B, C, h, w) or (C, h, w) upsampled bilinearly (half-pixel
  // centres, as F.interpolate's align_corners=False) to size (H, W): -> (B, H, W) or (H, W) int64,
  // the first class on ties, a NaN's class where there is one. The upsampled logits are never
  // stored. The same classes on every device (the same float arithmetic in the same order).
  m.def("upsample_argmax(Tensor logits, int[2] size) -> Tensor");
  // Per-pixel class of logits (B, C, h, w) upsampled to the image (B, H, W, 3) uint8 by joint
  // bilateral upsampling (guided_upsample_argmax.h: each of the window x window low-resolution
  // neighbours weighted by a spatial Gaussian of sigma_spatial grid pixels and a Gaussian of
  // sigma_range on the RGB difference, colours in [0, 1], to the image averaged over the
  // neighbour's area) -> (B, H, W) int64, the first class on ties. Reads nothing back.
  m.def(
      "guided_upsample_argmax(Tensor logits, Tensor image, float sigma_spatial, "
      "float sigma_range, int window) -> Tensor");
  // Cityscapes panoptic ids from semantic (trainIds) and instance maps, (B, H, W) or (H, W)
  // integer: per pixel labelId (label_of_class[trainId]) for stuff, labelId * label_divisor + j
  // for a thing pixel (thing_index[trainId] >= 0) with instance id k > 0, where j ranks k among
  // the ids of that class in the image (0, 1, ...), and 0 (void) for a thing pixel with id 0 or a
  // trainId outside [0, C). Instance ids lie in [0, max_instance_id] (the CPU checks it; CUDA
  // clamps them, reading nothing back). -> (int64 ids of the maps' shape, int64 0-dim: the most
  // ids of one thing class in one image; above label_divisor the ids of that class collide).
  m.def(
      "panoptic_ids(Tensor semantic, Tensor instance, Tensor label_of_class, Tensor thing_index, "
      "int num_things, int max_instance_id, int label_divisor) -> (Tensor panoptic, "
      "Tensor most_ids)");
  // Instance ids at the output resolution: instance (B, h, w) or (h, w) integer ids in
  // [0, max_instance_id] (as cluster_instances gives them; each id's pixels share one class of
  // semantic_lowres, of the same shape) resized to size (H, W) by nearest neighbour with
  // half-pixel centres (panonet.data.transforms.resize_labels), a pixel's id dropped (0) where the
  // optional semantic_fullres (B, H, W) or (H, W) differs from the id's class, ids with fewer than
  // max(min_size, 1) pixels left dropped, and the rest renumbered 1..K in order, per image. With
  // reach > 0 (and semantic_fullres), a pixel whose source pixel has another class than its own
  // takes instead the id of the nearest low-resolution pixel of its class with an id, within reach
  // rows and columns of the source (upsample_instances.h: reached_id), so that structures thinner
  // than the low-resolution grid keep their instance.
  // -> int64 (B, H, W) or (H, W). The CPU checks the ids' range; CUDA clamps, reading nothing.
  m.def(
      "upsample_instances(Tensor instance, Tensor semantic_lowres, Tensor? semantic_fullres, "
      "int[2] size, int max_instance_id, int min_size, int reach=0) -> Tensor");
  // Test and benchmark hook, CPU only: the nearest-center search of the CUDA labelling kernel
  // run on the host. points (N, D), centers (K, D) -> index of the nearest center (lowest index
  // on ties; -1 if K == 0) and the number of centers whose distance it computed, both (N) int64.
  m.def("_nearest_by_projection(Tensor points, Tensor centers) -> (Tensor labels, Tensor visited)");
  // Benchmark and test hook: the CUDA mean-shift's algorithm run sequentially on the host (any
  // device's points; results on the CPU), counting its work; the bins' hash keeps its lowest
  // hash_bits bits (fewer than 64: collisions, for the tests). -> counts (16) int64: seeds, climb
  // iterations, bins tested by a full scan of the group per iteration, bins tested within the
  // index's reach (mean_shift_grid.h), straddling bins met, points tested (those of straddling
  // bins that the triangle inequality with their bin's center leaves undecided), label distances
  // by a full scan, label distances by the projection search, points of the straddling bins (all
  // tested before that inequality was used), suppression rounds, suppression distances, climb
  // iterations if seeds at one mean were merged after each step, distinct means over all steps,
  // binary searches of the climb's and the suppression's index, the climb's warp steps (chunks
  // of 32 bins, a step and the undecided points in 32s for each chunk with straddling bins, two
  // per iteration) over all seeds and for the longest seed; then labels (N) and centers (K, D)
  // float64.
  m.def(
      "_mean_shift_gpu_work(Tensor points, float bandwidth, bool bin_seeding, int min_bin_freq, "
      "int max_iter, int hash_bits=64) -> (Tensor counts, Tensor labels, Tensor centers)");
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "panonet's compiled operators (registered as torch.ops.panonet.*)";
#ifdef PANONET_WITH_CUDA
  m.attr("cuda_built") = true;
  m.attr("cuda_arch_list") = PANONET_CUDA_ARCH_LIST;
#else
  m.attr("cuda_built") = false;
  m.attr("cuda_arch_list") = "";
#endif
  m.attr("torch_version") = PANONET_TORCH_VERSION;
}
