# kvm-migrate: one image for the API and the workers.
# libvirt0 provides libvirt.so.0, which the service loads through koffi; no
# libvirt daemon runs in the container: it talks to the hosts' libvirtd by URI.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY api ./api
COPY worker ./worker
COPY shared ./shared
COPY bin ./bin
COPY cli ./cli
# The demo and the lab are development tools and stay out of the image.
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvirt0 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The migrations page's HTML, CSS and modules are served as they are, beside the compiled API.
COPY --from=build /app/api/public ./dist/api/public
COPY package.json ./
USER node
# libvirt calls run on libuv's pool; its size is fixed at start (worker/policy/threads.ts).
ENV UV_THREADPOOL_SIZE=16
EXPOSE 8010
CMD ["node", "dist/bin/api.js"]
