// One kernel: out[i] = a[i] + b[i].  A C entry point so Python can call it through ctypes.
#include <cuda_runtime.h>

__global__ void add_kernel(const float* a, const float* b, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}

extern "C" {

// Returns 0 on success, else the cudaError_t value (name via demo_cuda_error_name).
int demo_cuda_add(const float* a, const float* b, float* out, int n) {
  float *da = nullptr, *db = nullptr, *dout = nullptr;
  size_t bytes = static_cast<size_t>(n) * sizeof(float);
  cudaError_t err = cudaMalloc(&da, bytes);
  if (err == cudaSuccess) err = cudaMalloc(&db, bytes);
  if (err == cudaSuccess) err = cudaMalloc(&dout, bytes);
  if (err == cudaSuccess) err = cudaMemcpy(da, a, bytes, cudaMemcpyHostToDevice);
  if (err == cudaSuccess) err = cudaMemcpy(db, b, bytes, cudaMemcpyHostToDevice);
  if (err == cudaSuccess) {
    int threads = 256;
    add_kernel<<<(n + threads - 1) / threads, threads>>>(da, db, dout, n);
    err = cudaGetLastError();
  }
  if (err == cudaSuccess) err = cudaMemcpy(out, dout, bytes, cudaMemcpyDeviceToHost);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dout);
  return static_cast<int>(err);
}

const char* demo_cuda_error_name(int err) { return cudaGetErrorString(static_cast<cudaError_t>(err)); }

int demo_cuda_device_count(void) {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}
}
